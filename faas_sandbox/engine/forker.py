"""The forker: a small, credential-free, single-threaded process that forks every sandbox child.

:class:`~faas_sandbox.sandbox.Sandbox` starts it as a fresh interpreter
(``python -I``, environment PATH and LANG only) so its memory never held a Colonies key, and
talks to it over its stdin/stdout with :mod:`~faas_sandbox.wire` frames. It imports
everything a child needs (RestrictedPython, the vetted modules, json) once, then loops on
``poll`` over: its request pipe, each child's result pipe and each child's pidfd; the poll
timeout is the nearest wall-clock deadline.

Protocol (parent -> forker): a ``config`` frame first, answered by ``hello`` (pid and
features); then ``call`` (source, function, ``args`` as a JSON text ``[args, kwargs]``,
limits, modules; or a trusted ``probe`` name), ``bare`` (benchmark floor) and ``stats``, each
with an ``id`` answered exactly once. ``log`` frames go the other way unprompted.

Compiling: each source is compiled once with :func:`guards.compile_source` and cached by
sha256 (LRU, :data:`CACHE_SIZE`); compile errors are answered at once without forking, and
cached too. A source over ``max_source_bytes`` is refused as ``compile``.

Fork ahead: ``prefork`` spare children are kept forked and fully isolated, blocked reading
their request pipe. A call takes a spare (or forks one on demand) and the spare applies the
call's rlimits, runs, answers and exits; a spare is never reused. Spares are replenished only
when the loop is idle (nothing readable, no call running), never on a call's critical path.
A spare can only run code compiled before it was forked (it inherits the cache), so compiling
a *new* source retires every spare (SIGKILL) and that call forks a fresh child; spares forked
afterwards carry the new code object. Children never compile. After each idle-time fork the
forker runs a synthetic request cycle (:meth:`Forker._prefault`) so that the copy-on-write
faults that fork left on its own pages are taken while idle, not by the next call.

Early answer: once a child's complete, well-formed result frame (with the child's own
``getrusage``) has arrived, the call is answered at once; the child is SIGKILLed (it is
exiting anyway) and reaped later through its pidfd, off the call's critical path.

Shutdown: EOF on stdin -> SIGKILL every child's process group, reap, remove the work dirs,
exit. Children have PR_SET_PDEATHSIG=SIGKILL, so killing the forker kills them too.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import select
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import OrderedDict
from contextlib import suppress
from typing import Any

from .. import seccomp_filter
from . import child, guards, isolation, modules, process, wire
from .outcome import ErrorKind, Outcome, Usage

CACHE_SIZE = 256
_SAMPLE_CALL = wire.encode({
    "op": "call", "id": 0, "source": "def f(x):\n    return x\n", "function": "f",
    "args": "[[1],{}]", "modules": ["math"],
    "limits": {"wall_seconds": 1.0, "cpu_seconds": 1, "memory_mb": 64, "max_result_bytes": 1024,
               "max_stdout_bytes": 1024, "max_open_files": 16, "max_processes": 1,
               "file_size_bytes": 0, "max_source_bytes": 1024, "max_args_bytes": 1024}})
_SAMPLE_RESULT = wire.pack(b'{"ok":true,"stdout":"","value":1.5,'
                           b'"usage":{"cpu_s":0.0015,"max_rss_bytes":1024}}')
_BASE_NAME = re.compile(r"faas-sandbox-(\d+)-\w+")
SPARE_BACKOFF_S = 1.0  # after a spare dies before use, wait before forking another
_POLLIN = select.POLLIN | select.POLLHUP | select.POLLERR
assert modules.MODULE_NAMES  # imported for its side effect: every vetted module is loaded


class Forker:
    def __init__(self, config: dict[str, Any], proto_in: int, proto_out: int) -> None:
        self.proto_in, self.proto_out = proto_in, proto_out
        self.prefork = max(0, int(config.get("prefork", 1)))
        self.cache: OrderedDict[str, guards.Compiled] = OrderedDict()
        self.spares: list[process.ChildProc] = []
        self.children: set[process.ChildProc] = set()
        self.fds: dict[int, tuple[str, process.ChildProc]] = {}
        self.poller = select.poll()
        self.inbuf = wire.FrameBuffer(wire.MAX_CONTROL_FRAME)
        self.backoff_until = 0.0
        self.serial = 0
        self.closing: list[process.ChildProc] = []  # closed after each poll batch
        self.base = _work_base()
        os.chmod(self.base, 0o711)
        self.features: dict[str, Any] = {"forker_pid": os.getpid(), "prefork": self.prefork}
        drop_to = None
        if os.geteuid() == 0:
            drop_to = (int(config["uid"]), int(config["gid"]))
        self.features["drop_privileges"] = drop_to is not None
        # -- oslayer (#9): namespaces, allow-list filter, Landlock ruleset (engine/isolation) --
        lockdown, layers = isolation.prepare(bool(config.get("seccomp", True)))
        self.iso = child.Isolation(os.getpid(), drop_to, lockdown)
        report = self._selftest()
        if not report.get("ok") and (lockdown.program or lockdown.fds):
            without = child.Isolation(os.getpid(), drop_to, isolation.Lockdown(None, None))
            retry = self._selftest(without)
            if retry.get("ok"):  # only the lockdown failed: run without it, and say so
                layers["lockdown_error"] = f"kernel refused the lockdown: {report['error']}"
                self.features["seccomp_error"] = layers["lockdown_error"]
                self.iso, report = without, retry
        isolation.confirm(layers, self.iso.lockdown, bool(report.get("ok")))
        layers["drop_privileges"] = drop_to is not None
        self.features["layers"] = layers
        self.features["seccomp"] = layers["seccomp"]
        # -- end oslayer --
        self.features["pidfd"] = _pidfd_works()
        if report.get("ok"):
            self.features["child_uid"], self.features["child_gid"] = report["uid"], report["gid"]
        else:
            self.features["isolation_error"] = report.get("error", "self-test child failed")

    # -- plumbing -------------------------------------------------------------------------
    def _workdir(self) -> str:
        self.serial += 1
        path = os.path.join(self.base, str(self.serial))
        os.mkdir(path, 0o555)
        return path

    def _selftest(self, iso: child.Isolation | None = None) -> dict[str, Any]:
        iso = iso or self.iso
        res_r, res_w = os.pipe()
        workdir = self._workdir()
        pid = os.fork()
        if pid == 0:  # pragma: no cover
            child.selftest(iso, res_w, workdir)
        os.close(res_w)
        try:
            report = wire.read_frame(res_r, 1 << 16)
        except wire.WireError as exc:
            report = {"ok": False, "error": str(exc)}
        finally:
            os.close(res_r)
            _, status = os.waitpid(pid, 0)
            os.rmdir(workdir)
        return report or {"ok": False, "error": f"self-test child exited with status {status}"}

    def send(self, msg: dict[str, Any]) -> None:
        wire.write_all(self.proto_out, wire.encode(msg))

    def log(self, level: str, message: str) -> None:
        self.send({"op": "log", "level": level, "message": message})

    def _watch(self, proc: process.ChildProc) -> None:
        self.children.add(proc)
        self.fds[proc.res_fd] = ("result", proc)
        self.poller.register(proc.res_fd, _POLLIN)
        if proc.pidfd is not None:
            self.fds[proc.pidfd] = ("exit", proc)
            self.poller.register(proc.pidfd, _POLLIN)

    def _unwatch_result(self, proc: process.ChildProc) -> None:
        if proc.res_fd >= 0 and self.fds.pop(proc.res_fd, None) is not None:
            self.poller.unregister(proc.res_fd)

    def _forget(self, proc: process.ChildProc) -> None:
        self._unwatch_result(proc)
        if proc.pidfd is not None and self.fds.pop(proc.pidfd, None) is not None:
            self.poller.unregister(proc.pidfd)
        self.children.discard(proc)
        if proc in self.spares:
            self.spares.remove(proc)

    def _lookup(self, sha: str) -> Any:
        compiled = self.cache.get(sha)
        return None if compiled is None else compiled.code

    def _fork(self) -> process.ChildProc:
        proc = process.fork_child(self.iso, self._workdir(), self._lookup)
        self._watch(proc)
        return proc

    # -- requests ---------------------------------------------------------------------------
    def _compile(self, sha: str, source: str) -> guards.Compiled:
        compiled = self.cache.get(sha)
        if compiled is not None:
            self.cache.move_to_end(sha)
            return compiled
        compiled = guards.compile_source(source)
        self.cache[sha] = compiled
        if len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        if compiled.code is not None:
            self._retire_spares()  # they were forked without this code object
        return compiled

    def _retire_spares(self) -> None:
        for spare in self.spares:
            spare.kill(process.Killed.RETIRED)
            spare.close_request()
        self.spares.clear()

    def _answer(self, call_id: int, pid: int, outcome: Outcome) -> None:
        wire.write_all(self.proto_out, process.dumps_outcome(call_id, pid, outcome))

    def on_call(self, msg: dict[str, Any]) -> None:
        call_id, limits = msg["id"], msg["limits"]
        if "probe" in msg:
            request: dict[str, Any] = {"probe": msg["probe"], "function": "", "limits": limits,
                                       "args": msg.get("args", "[[],{}]"), "modules": []}
        else:
            source = msg["source"]
            raw = source.encode("utf-8", "surrogatepass")
            refusal = process.admit(len(raw), len(msg["args"]), int(limits["max_source_bytes"]),
                                    int(limits["max_args_bytes"]))
            if refusal is not None:
                return self._answer(call_id, 0, refusal)
            sha = hashlib.sha256(raw).hexdigest()
            compiled = self._compile(sha, source)
            if compiled.code is None:
                return self._answer(call_id, 0, Outcome.failure(
                    ErrorKind.COMPILE, "; ".join(compiled.errors)))
            request = {"sha": sha, "function": msg["function"], "args": msg["args"],
                       "limits": limits, "modules": msg["modules"]}
        try:
            proc = self.spares.pop() if self.spares else self._fork()
        except OSError as exc:
            return self._answer(call_id, 0, Outcome.failure(
                ErrorKind.CRASH, f"could not fork a sandbox child: {exc}"))
        cap = process.result_cap(int(limits["max_result_bytes"]),
                                 int(limits["max_stdout_bytes"]))
        proc.dispatch(msg, wire.encode(request), cap, float(limits["wall_seconds"]))

    def on_bare(self, msg: dict[str, Any]) -> None:
        proc = process.fork_bare()
        proc.call, proc.started, proc.deadline = msg, time.monotonic(), time.monotonic() + 10
        self._watch(proc)

    def on_stats(self, msg: dict[str, Any]) -> None:
        live = [p for p in self.children if not p.answered]
        self.send({"id": msg["id"], "spares": [p.pid for p in self.spares],
                   "running": [p.pid for p in live if p.call is not None],
                   "children": [p.pid for p in live], "cache": len(self.cache),
                   "exiting": [p.pid for p in self.children if p.answered]})

    def on_request(self, body: bytes) -> None:
        msg = wire.loads(body)
        op = msg.get("op")
        handler = {"call": self.on_call, "bare": self.on_bare, "stats": self.on_stats}.get(op)
        if handler is None:
            self.log("WARNING", f"unknown request op {op!r}")
            return
        try:
            handler(msg)
        except Exception:  # noqa: BLE001 - one bad request must not stop the forker
            self.log("ERROR", f"request {op} failed:\n{traceback.format_exc()}")
            if "id" in msg:
                self._answer(msg["id"], 0, Outcome.failure(ErrorKind.CRASH,
                                                           "sandbox forker error (see its log)"))

    # -- children ---------------------------------------------------------------------------
    def on_exit(self, proc: process.ChildProc) -> None:
        """The child is gone: reap, read the rest, classify, answer, clean up."""
        if not proc.try_reap():
            if proc.pidfd is not None and self.fds.pop(proc.pidfd, None) is not None:
                self.poller.unregister(proc.pidfd)  # readable but not reapable: poll wait4
                os.close(proc.pidfd)
                proc.pidfd = None
            return
        if proc.answered:  # the parent already has the outcome: just clean up
            self._forget(proc)
            self.closing.append(proc)
            return
        now = time.monotonic()
        if proc.killed is not process.Killed.OVERFLOW:
            proc.drain()
        self._forget(proc)
        try:
            if proc.call is None:
                if proc.killed is None:  # a spare died before it got a call
                    self.backoff_until = now + SPARE_BACKOFF_S
                    self.log("ERROR", "spare child died before use: " + process.classify(
                        process.ExitInfo(proc.status or 0), Usage(), 0, 0).message)
            elif proc.bare:
                self._answer(proc.call["id"], proc.pid, Outcome(True, None,
                                                                usage=proc.usage(now)))
            else:
                self._finish_call(proc, now)
        finally:
            self.closing.append(proc)

    def _finish_call(self, proc: process.ChildProc, now: float) -> None:
        assert proc.call is not None and proc.status is not None
        frame, error = (None, None)
        if proc.killed is not process.Killed.OVERFLOW:
            frame, error = process.parse_result(bytes(proc.buf))
        limits = proc.call["limits"]
        outcome = process.classify(process.ExitInfo(proc.status, frame, error, proc.killed),
                                   proc.usage(now), float(limits["wall_seconds"]),
                                   int(limits["cpu_seconds"]))
        self._answer(proc.call["id"], proc.pid, outcome)

    def _answer_early(self, proc: process.ChildProc) -> None:
        """The child's whole frame is here: answer now, before its exit and reap.

        A complete, well-formed frame is the verdict whatever the exit status, so only the
        usage must come from elsewhere: the child's own ``getrusage`` in the frame (its exit
        is not counted), wall time from our clock. Without it, wait for the reap as usual.
        The child is SIGKILLed (it is exiting anyway) and reaped later through its pidfd."""
        assert proc.call is not None
        frame, _ = process.parse_result(bytes(proc.buf))
        own = None if frame is None else process.self_usage(frame)
        if own is None:
            return
        limits = proc.call["limits"]
        usage = Usage(wall_s=time.monotonic() - proc.started, cpu_s=own[0],
                      max_rss_bytes=own[1])
        outcome = process.classify(process.ExitInfo(0, frame), usage,
                                   float(limits["wall_seconds"]), int(limits["cpu_seconds"]))
        self._answer(proc.call["id"], proc.pid, outcome)
        proc.answered = True
        proc.kill(process.Killed.ANSWERED)
        self._unwatch_result(proc)

    def _expire(self, now: float) -> float | None:
        """Kill children past their deadline; seconds until the next deadline (None: none)."""
        nearest = None
        for proc in self.children:
            if proc.call is None or proc.killed is not None:
                continue
            if now >= proc.deadline:
                proc.kill(process.Killed.TIMEOUT)
            elif nearest is None or proc.deadline < nearest:
                nearest = proc.deadline
        if any(p.pidfd is None for p in self.children):
            nearest = min(nearest or now + 0.005, now + 0.005)
        return None if nearest is None else max(0.0, nearest - now)

    def _prefault(self) -> None:
        """After an idle-time fork, run a synthetic call cycle (no I/O, results discarded).

        A fork makes every page the forker shares with the new (long-lived) spare
        copy-on-write; the forker's first write to each costs a fault (~240 of them, ~0.6 ms
        here). Taking them now keeps them off the next call's critical path."""
        for body in wire.FrameBuffer(1 << 20).feed(_SAMPLE_CALL):
            msg = wire.loads(body)
        sha = hashlib.sha256(msg["source"].encode("utf-8", "surrogatepass")).hexdigest()
        self.cache.get(sha)
        wire.encode({"sha": sha, "function": msg["function"], "args": msg["args"],
                     "limits": msg["limits"], "modules": msg["modules"]})
        frame, error = process.parse_result(_SAMPLE_RESULT)
        own = process.self_usage(frame or {}) or (0.0, 0)
        usage = Usage(wall_s=time.monotonic() - time.monotonic(), cpu_s=own[0],
                      max_rss_bytes=own[1])
        outcome = process.classify(process.ExitInfo(0, frame, error), usage, 1.0, 1)
        process.dumps_outcome(0, 0, outcome)
        self.fds.get(-1)
        any(p.call is not None for p in self.children)

    def _want_spare(self, now: float) -> bool:
        return (len(self.spares) < self.prefork and now >= self.backoff_until
                and not any(p.call is not None and not p.answered for p in self.children))

    # -- loop -------------------------------------------------------------------------------
    def run(self) -> None:
        os.set_blocking(self.proto_in, False)
        self.poller.register(self.proto_in, _POLLIN)
        while True:
            now = time.monotonic()
            wait = self._expire(now)
            idle_work = self._want_spare(now)
            timeout_ms = 0 if idle_work else (None if wait is None else wait * 1000)
            events = self.poller.poll(timeout_ms)
            if not events and idle_work:
                try:
                    self.spares.append(self._fork())
                except OSError as exc:
                    self.backoff_until = time.monotonic() + SPARE_BACKOFF_S
                    self.log("WARNING", f"could not fork a spare: {exc}")
                else:
                    self._prefault()
                continue
            for fd, _ in events:
                if fd == self.proto_in:
                    if not self._read_requests():
                        return
                    continue
                entry = self.fds.get(fd)
                if entry is None:
                    continue
                what, proc = entry
                if what == "result":
                    more = proc.drain()
                    if (proc.call is not None and not proc.bare and proc.killed is None
                            and proc.frame_complete()):
                        self._answer_early(proc)
                    if not more:
                        self._unwatch_result(proc)
                else:
                    self.on_exit(proc)
            for proc in [p for p in self.children if p.pidfd is None]:
                self.on_exit(proc)
            for proc in self.closing:
                proc.close()
            self.closing.clear()

    def _read_requests(self) -> bool:
        """Read and handle every complete request; False at EOF (the parent is gone)."""
        while True:
            try:
                data = os.read(self.proto_in, 1 << 20)
            except BlockingIOError:
                return True
            if not data:
                return False
            for body in self.inbuf.feed(data):
                self.on_request(body)

    def shutdown(self) -> None:
        for proc in list(self.children):
            proc.kill(process.Killed.SHUTDOWN)
        for proc in list(self.children):
            process.reap_blocking(proc)
            proc.close()
        self.children.clear()
        shutil.rmtree(self.base, ignore_errors=True)


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


def _work_base() -> str:
    """A private dir for the children's empty work dirs, on tmpfs when there is one: one
    mkdir+rmdir per child costs ~15 us on tmpfs and ~120 us on ext4 here. Its name carries
    the forker's pid so that a later forker can remove the dirs of one that was SIGKILLed."""
    prefix = f"faas-sandbox-{os.getpid()}-"
    for parent in ("/dev/shm", tempfile.gettempdir()):
        try:
            base = tempfile.mkdtemp(prefix=prefix, dir=parent)
        except OSError:
            continue
        _sweep(parent)
        return base
    raise OSError("no writable temporary directory for the children's work dirs")


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
            shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def main() -> None:
    """Entry point of ``python -I -c 'from faas_sandbox.engine.forker import main; main()'``."""
    warnings.simplefilter("ignore")  # compile warnings must never reach a pipe
    os.umask(0o022)  # work dirs must come out 0555 (nobody needs r-x to enter its cwd)
    seccomp_filter.set_name(b"faas-forker")
    # Move the protocol off fds 0/1 so a stray print can never corrupt it.
    proto_in, proto_out = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    os.close(null)
    config = wire.read_frame(proto_in, 1 << 20)
    if config is None or config.get("op") != "config":
        sys.exit(2)
    forker = Forker(config, proto_in, proto_out)
    forker.send({"op": "hello", "features": forker.features})
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
