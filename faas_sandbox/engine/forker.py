"""The forker: a small, credential-free, single-threaded process that forks sandbox children.

:class:`~faas_sandbox.engine.sandbox.Sandbox` starts it as a fresh interpreter (``python -I``,
environment PATH and LANG only) so its memory never held a Colonies key, and talks to it
over one SOCK_SEQPACKET socket (:mod:`~faas_sandbox.engine.control`). It imports everything
a child needs (RestrictedPython, the vetted modules, json, marshal) once, then loops on
``poll`` over the socket and each child's pidfd.

It never sees a function's source, code, arguments or result. For each CREDIT it forks a
generic child (which isolates and warms itself) and hands the caller the child's request
pipe, result pipe and a pidfd with SCM_RIGHTS, keeping only its own pidfd. The calling
thread then writes its request to the child and reads the answer itself; it enforces the
wall deadline itself (SIGKILL through its pidfd) whatever the forker is doing. When a child
exits the forker SIGKILLs its process group, reaps it with ``wait4`` and reports the wait
status, its CPU time (the larger of rusage and the clock RLIMIT_CPU is checked against) and
peak RSS (EXIT), which the caller needs only when no RESULT frame came.

The forker runs under its own RLIMIT_AS (soft: its size at start + :data:`OWN_HEADROOM`);
nothing it does grows with what functions send.

Shutdown: EOF on the socket -> SIGKILL every child's process group, reap, remove the work
dirs, exit. Children have PR_SET_PDEATHSIG=SIGKILL, so killing the forker kills them too.
"""

from __future__ import annotations

import gc
import json
import os
import re
import resource
import select
import signal
import socket
import sys
import time
import traceback
import warnings
from contextlib import suppress
from typing import Any

from . import (
    child,
    control,
    isolation,  # oslayer (#9)
    modules,
    run,
)
from .isolation import prctl

OWN_HEADROOM = 256 << 20  # RLIMIT_AS soft limit of the forker over its size at start
_BASE_NAME = re.compile(r"faas-sandbox-(\d+)-\w+")
_POLLIN = select.POLLIN | select.POLLHUP | select.POLLERR
_TEMP_DIRS = ("/dev/shm", "/tmp", "/var/tmp")
assert modules.MODULE_NAMES  # imported for its side effect: every vetted module is loaded


def limit_clock(pid: int) -> float:
    """The CPU time RLIMIT_CPU is checked against (the process's tick-sampled PROF clock) of
    a child that has exited but is not reaped yet; 0.0 if it cannot be read. ``wait4``'s
    utime+stime is scaled to the scheduler's runtime and can read below the limit (0.99 s
    and less here) when the kernel has just killed the child at it; with RLIMIT_CPU
    soft == hard that SIGKILL is only told apart from others by CPU time >= the limit."""
    try:
        return time.clock_gettime(-(pid + 1) * 8)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_PROF)
    except OSError:
        return 0.0


class Kid:
    """One forked child as the forker sees it: a pidfd to reap it and its work dir."""

    __slots__ = ("serial", "pid", "pidfd", "workdir")

    def __init__(self, serial: int, pid: int, pidfd: int, workdir: str) -> None:
        self.serial, self.pid, self.pidfd, self.workdir = serial, pid, pidfd, workdir


class Forker:
    def __init__(self, config: dict[str, Any], sock: socket.socket) -> None:
        self.sock = sock
        self.kids: dict[int, Kid] = {}  # pidfd -> kid
        self.poller = select.poll()
        self.serial = 0
        self.base = _work_base()
        os.chmod(self.base, 0o711)
        self.features: dict[str, Any] = {
            "forker_pid": os.getpid(),
            "prefork": int(config.get("prefork", 1)),
        }
        drop_to = None
        if os.geteuid() == 0:
            drop_to = (int(config["uid"]), int(config["gid"]))
        self.features["drop_privileges"] = drop_to is not None
        # -- oslayer (#9): namespaces, allow-list filter, Landlock ruleset (engine/isolation) --
        lockdown, layers = isolation.prepare(bool(config.get("seccomp", True)))
        self.iso = child.Isolation(os.getpid(), drop_to, lockdown)
        ok, report = self._selftest()
        if not ok and (lockdown.program or lockdown.fds):
            without = child.Isolation(os.getpid(), drop_to, isolation.Lockdown(None, None))
            ok_without, retry = self._selftest(without)
            if ok_without:  # only the lockdown failed: run without it, and say so
                layers["lockdown_error"] = f"kernel refused the lockdown: {report}"
                self.iso, ok, report = without, True, retry
        isolation.confirm(layers, self.iso.lockdown, ok)
        layers["drop_privileges"] = drop_to is not None
        self.features["layers"] = layers
        self.features["seccomp"] = layers["seccomp"]
        # -- end oslayer --
        self.features["pidfd"] = _pidfd_works()
        if ok:
            uid, gid = report.split()
            self.features["child_uid"], self.features["child_gid"] = int(uid), int(gid)
        else:
            self.features["isolation_error"] = report or "self-test child failed"

    def _workdir(self) -> str:
        self.serial += 1
        path = os.path.join(self.base, str(self.serial))
        os.mkdir(path, 0o555)
        return path

    def _selftest(self, iso: child.Isolation | None = None) -> tuple[bool, str]:
        iso = iso or self.iso
        res_r, res_w = os.pipe()
        workdir = self._workdir()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            child.selftest(iso, res_w, workdir)
        os.close(res_w)
        try:
            report = os.read(res_r, 4096)
        finally:
            os.close(res_r)
            _, status = os.waitpid(pid, 0)
            os.rmdir(workdir)
        if not report:
            return False, f"self-test child exited with status {status}"
        return report[0] == 1, report[1:].decode("utf-8", "replace")

    def log(self, level: str, message: str) -> None:
        control.send_log(self.sock, level, message)

    def fork_one(self) -> None:
        """Fork a generic child and hand its pipe ends and a pidfd to the parent."""
        workdir = self._workdir()
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            child.serve(self.iso, req_r, res_w, workdir)
        os.close(req_r)
        os.close(res_w)
        pidfd = os.pidfd_open(pid)
        kid = Kid(self.serial, pid, pidfd, workdir)
        self.kids[pidfd] = kid
        self.poller.register(pidfd, _POLLIN)
        try:
            control.send(
                self.sock,
                control.CHILD,
                control.CHILD_MSG.pack(kid.serial, pid),
                [req_w, res_r, pidfd],
            )
        finally:
            os.close(req_w)
            os.close(res_r)

    def on_exit(self, kid: Kid) -> None:
        """The child is gone: kill what is left of its group, reap, report, clean up."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(kid.pid, signal.SIGKILL)  # it is a zombie: the pid is still ours
        cpu_s = limit_clock(kid.pid)  # before wait4: read from the zombie
        _, status, ru = os.wait4(kid.pid, 0)
        cpu_s = max(cpu_s, ru.ru_utime + ru.ru_stime)
        self.poller.unregister(kid.pidfd)
        del self.kids[kid.pidfd]
        os.close(kid.pidfd)
        with suppress(OSError):
            os.rmdir(kid.workdir)
        control.send(
            self.sock,
            control.EXIT,
            control.EXIT_MSG.pack(kid.serial, kid.pid, status, cpu_s, ru.ru_maxrss * 1024),
        )

    def on_message(self, op: int, payload: bytes, fds: list[int]) -> None:
        for fd in fds:
            os.close(fd)
        if op == control.CREDIT:
            (n,) = control.CREDIT_MSG.unpack(payload)
            for _ in range(n):
                try:
                    self.fork_one()
                except OSError as exc:
                    control.send(
                        self.sock, control.NOFORK, f"could not fork a sandbox child: {exc}".encode()
                    )
        else:
            self.log("WARNING", f"unknown control op {op}")

    def run(self) -> None:
        self.poller.register(self.sock.fileno(), _POLLIN)
        sock_fd = self.sock.fileno()
        while True:
            for fd, _ in self.poller.poll():
                if fd == sock_fd:
                    msg = control.recv(self.sock)
                    if msg is None:
                        return
                    self.on_message(*msg)
                elif (kid := self.kids.get(fd)) is not None:
                    self.on_exit(kid)

    def shutdown(self) -> None:
        for kid in list(self.kids.values()):
            with suppress(OSError):
                signal.pidfd_send_signal(kid.pidfd, signal.SIGKILL)
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(kid.pid, signal.SIGKILL)
        for kid in list(self.kids.values()):
            with suppress(ChildProcessError):
                os.waitpid(kid.pid, 0)
            os.close(kid.pidfd)
        self.kids.clear()
        _remove_base(self.base)


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _work_base() -> str:
    """A private dir for the children's empty work dirs, on tmpfs when there is one: one
    mkdir+rmdir per child costs ~15 us on tmpfs and ~120 us on ext4 here. Its name carries
    the forker's pid so that a later forker can remove the dirs of one that was SIGKILLed.
    (Plain os calls: ``tempfile`` and ``shutil`` would load zlib, bz2 and lzma into the
    forker, 30 more mappings that every fork copies and every child tears down.)"""
    prefix = f"faas-sandbox-{os.getpid()}-"
    for parent in _TEMP_DIRS:
        for _ in range(16):
            base = os.path.join(parent, prefix + os.urandom(6).hex())
            try:
                os.mkdir(base, 0o700)
            except FileExistsError:
                continue
            except OSError:
                break
            _sweep(parent)
            return base
    raise OSError("no writable temporary directory for the children's work dirs")


def _remove_base(path: str) -> None:
    """Remove a work base and the (empty) work dirs in it; anything else stays."""
    with suppress(OSError):
        for name in os.listdir(path):
            with suppress(OSError):
                os.rmdir(os.path.join(path, name))
    with suppress(OSError):
        os.rmdir(path)


def _sweep(parent: str) -> None:
    """Remove work dirs that we own and whose forker no longer exists."""
    for name in os.listdir(parent):
        match = _BASE_NAME.fullmatch(name)
        if match is None:
            continue
        path = os.path.join(parent, name)
        try:
            if os.lstat(path).st_uid != os.geteuid():
                continue
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            _remove_base(path)
        except OSError:
            continue


def _limit_own_memory() -> None:
    with open("/proc/self/statm", "rb") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = size + OWN_HEADROOM
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def main() -> None:
    """Entry point of ``python -I -c 'from faas_sandbox.engine.forker import main; main()'``."""
    warnings.simplefilter("ignore")
    os.umask(0o022)  # work dirs must come out 0555 (nobody needs r-x to enter its cwd)
    prctl.set_name(b"faas-forker")
    # The control socket arrives as fd 0; move it off 0/1 so a stray print cannot touch it.
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    first = control.recv(sock)
    if first is None or first[0] != control.CONFIG:
        sys.exit(2)
    config = json.loads(first[1])
    forker = Forker(config, sock)
    # PATH and LANG are not needed from here on (the forker never execs); cleared once here,
    # a child does not pay for os.environ.clear() (~60 page faults each).
    os.environ.clear()
    _limit_own_memory()
    run.install_stack_guard()  # a child's C-stack overflow then ends with a frame, not `crash`
    control.send_json(sock, control.HELLO, forker.features)
    gc.freeze()  # children then never touch (copy) the pages of these objects in a GC pass
    try:
        forker.run()
    except BrokenPipeError:
        pass  # the parent is gone; nobody is left to tell
    except Exception:
        with suppress(OSError):
            forker.log("ERROR", f"forker loop failed:\n{traceback.format_exc()}")
        raise
    finally:
        forker.shutdown()
