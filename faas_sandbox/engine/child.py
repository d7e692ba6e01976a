"""Everything a sandbox child runs after fork, and nothing else.

The forker forks generic children ahead of time; each holds no function's code and is used
for exactly one call:

1. :func:`isolate_child`: own session, fds 0-2 on /dev/null and every other inherited fd
   closed but its two pipes, empty environment, an empty cwd, supplementary groups dropped
   and the sandbox uid/gid taken (when root), not dumpable, SIGKILL on forker death (set
   *after* the uid change, which clears it), RLIMIT_CORE 0, no_new_privs.
2. Warm up while idle (:func:`warm_up`), take the memory reserve, read its size and hard
   limits, enter Landlock (from here on it can open no path) and install the allow-list
   seccomp filter (:mod:`faas_sandbox.engine.isolation`; from here on no socket, process or
   new fd, and ``prlimit64`` only on itself), then block reading one REQUEST frame, written
   by the calling thread of the parent directly (the forker handed it our pipe ends).
3. :func:`apply_limits`: RLIMIT_CPU, RLIMIT_AS (current size + memory_mb), RLIMIT_FSIZE,
   RLIMIT_NOFILE, RLIMIT_NPROC, each with soft == hard. Lowering a limit never needs
   privilege, so a spare can apply the limits of whichever call it gets; raising a hard
   limit needs CAP_SYS_RESOURCE, which a child never has (the start-up selftest checks it),
   so from here on its limits can only go down. At the CPU limit the kernel sends SIGKILL
   (soft == hard: no SIGXCPU first); the caller classifies that from the child's CPU time
   (:func:`faas_sandbox.engine.verdict.classify`).
4. :func:`faas_sandbox.engine.run.execute`: compile the source (or unmarshal the cached
   code), run, encode the result once -- all under those limits.
5. Write the frames on the result pipe and leave through ``os._exit`` in ``finally``.

Everything used here is imported by the forker before any fork: after the uid change the
child may be unable to read the Python installation, so a lazy import would fail. The child
never logs; every fact goes back in its result frame or its exit code (:class:`ExitCode`).
"""

from __future__ import annotations

import marshal
import mmap
import os
import resource
import select
import signal
from dataclasses import dataclass
from typing import Any, NoReturn

from ..policy import Limits
from . import run, wire
from .guards import compile_source
from .isolation import Lockdown
from .isolation.prctl import set_dumpable, set_name, set_no_new_privs, set_parent_death_signal
from .verdict import ExitCode

RESERVE_BYTES = 1 << 20  # address space freed on MemoryError so the child can still report
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MAX_FD = max(os.sysconf("SC_OPEN_MAX"), 1024)
_WARM_LIMITS = Limits(
    wall_seconds=1.0, cpu_seconds=1, memory_mb=64, max_result_bytes=1024, max_stdout_bytes=1024
)
# A trusted call an idle spare runs once before it waits: it unmarshals code (compiled once,
# here, in the forker), runs and encodes, so the copy-on-write faults a real call takes on
# those paths are paid while idle. Compiling is left out: it is slow and most calls do not.
_WARM_REQUEST = wire.Request(
    wire.CODE_BODY,
    "f",
    frozenset({"math", "json"}),
    _WARM_LIMITS,
    marshal.dumps(
        compile_source("def f(x, y=1):\n    s = [x, y]\n    print(x)\n    return {'v': s}\n").code
    ),
    b'[[1.5],{"y":2}]',
    element=True,
)

_WARM_FRAME = wire.encode_request(
    wire.CODE_BODY,
    b"f",
    wire.module_mask(_WARM_REQUEST.modules),
    wire.pack_limits(_WARM_LIMITS),
    _WARM_REQUEST.body,
    _WARM_REQUEST.args,
    element=True,
)


# Globals for the warm-up call and for the real call, built here in the forker (at import,
# before any fork): a child takes each at most once (run.Prepared).
_WARM_GLOBALS = run.Prepared()
_CALL_GLOBALS = run.Prepared()


@dataclass(frozen=True, slots=True)
class Isolation:
    """What every child of one forker does before it runs anything."""

    forker_pid: int
    drop_to: tuple[int, int] | None  # (uid, gid) to become; None when not running as root
    lockdown: Lockdown | None  # oslayer (#9): Landlock (while idle) + allow-list filter (per call)


class _Orphaned(Exception):
    pass


def isolate_child(iso: Isolation, keep: tuple[int, ...], workdir: str) -> int:
    """Cut the child off from the forker's session, files, environment and privileges.
    Returns a descriptor of its own ``/proc/self/comm`` (-1 if it cannot be opened) so it
    can rename itself once its request arrives, under the filter (which refuses prctl)."""
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    low = 3
    if iso.lockdown is not None:  # oslayer (#9): the Landlock ruleset stays open until lockdown
        keep = (*keep, *iso.lockdown.fds)
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _MAX_FD)
    if os.environ:  # empty already: the forker cleared its own before forking
        os.environ.clear()
    os.chdir(workdir)
    # opened before the uid change: that (and set_dumpable) hand /proc/self to root
    comm_fd = _open_comm()
    if iso.drop_to is not None:
        uid, gid = iso.drop_to
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getgroups():
            raise OSError("privileges were not dropped")
    set_dumpable(False)
    # commit_creds() cleared any death signal: set it now, then make sure the forker we
    # were forked from is still our parent (else it died before the prctl took effect).
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != iso.forker_pid:
        raise _Orphaned
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    set_no_new_privs()  # Landlock and the filter come while idle, after the warm-up
    return comm_fd


def _open_comm() -> int:
    try:
        return os.open("/proc/self/comm", os.O_WRONLY)
    except OSError:
        return -1


def _rename(comm_fd: int, name: bytes) -> None:
    """Rename this process through the descriptor :func:`isolate_child` opened, then close it
    (errors ignored: a name is for ps/top and tests only)."""
    if comm_fd >= 0:
        try:
            os.write(comm_fd, name)
        except OSError:
            pass
        os.close(comm_fd)


def vm_size() -> int:
    """This process's address-space size now (what RLIMIT_AS counts)."""
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        return int(os.read(fd, 128).split()[0]) * _PAGE
    finally:
        os.close(fd)


_LIMITED = (
    resource.RLIMIT_AS,
    resource.RLIMIT_CPU,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_NOFILE,
)


def hard_limits() -> dict[int, int]:
    """The hard limits ``apply_limits`` must not exceed, read while idle (off the call's path)."""
    return {which: resource.getrlimit(which)[1] for which in _LIMITED}


def call_limits(limits: Limits, vm_bytes: int, hard: dict[int, int]) -> list[tuple[int, int, int]]:
    """One call's ``(resource, soft, hard)``, soft == hard for each: RLIMIT_AS ``memory_mb``
    over ``vm_bytes``, CPU, FSIZE, NPROC, NOFILE; lowering only: none above ``hard``, the
    hard limits the child has."""
    out = []
    for which, value in (
        (resource.RLIMIT_AS, vm_bytes + (limits.memory_mb << 20)),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_FSIZE, limits.file_size_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes),
        (resource.RLIMIT_NOFILE, limits.max_open_files),
    ):
        ceiling = hard[which]
        if ceiling != resource.RLIM_INFINITY:
            value = min(value, ceiling)
        out.append((which, value, value))
    return out


def set_limits(triples: list[tuple[int, int, int]]) -> None:
    for which, soft, top in triples:
        resource.setrlimit(which, (soft, top))


def apply_limits(limits: Limits, vm_bytes: int, hard: dict[int, int]) -> None:
    """Per-call rlimits (:func:`call_limits`)."""
    set_limits(call_limits(limits, vm_bytes, hard))


def warm_up() -> None:
    """Read a request from a pipe, run the warm-up call, set every limit to what it is (a
    no-op that touches the code path); results are discarded."""
    read_fd, write_fd = os.pipe()  # the frame is far below a pipe's buffer: no blocking
    try:
        wire.write_all(write_fd, _WARM_FRAME)
        request = wire.read_request(read_fd)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    run.execute(request or _WARM_REQUEST, [b""], lambda frame: None, prepared=_WARM_GLOBALS)
    call_limits(_WARM_LIMITS, 0, hard_limits())  # computed, not applied
    set_limits([(which, *resource.getrlimit(which)) for which in _LIMITED])  # unchanged


def serve(iso: Isolation, req_fd: int, res_fd: int, workdir: str) -> NoReturn:
    """The whole life of a child: isolate, wait for one request, run it, answer, exit."""
    code = ExitCode.INTERNAL
    try:
        try:
            comm_fd = isolate_child(iso, (req_fd, res_fd), workdir)
        except _Orphaned:
            code = ExitCode.ORPHAN
            return  # type: ignore[misc]  # finally exits
        except OSError:
            code = ExitCode.SETUP
            return  # type: ignore[misc]  # finally exits
        set_name(b"faas-spare")
        if not select.select([req_fd], [], [], 0)[0]:
            warm_up()  # only while idle: a child whose request is waiting goes straight on
        # Taken while idle: the reserve is an anonymous mapping (address space, which RLIMIT_AS
        # counts, without touching a page), freed on MemoryError so the child can still
        # report; the size is read now, the request's bytes are added to it below.
        reserve: list[Any] = [mmap.mmap(-1, RESERVE_BYTES)]
        vm_bytes = vm_size()
        hard = hard_limits()
        if iso.lockdown is not None:  # oslayer (#9): no path, socket, process or higher rlimit
            code = ExitCode.SETUP
            iso.lockdown.enter()
        code = ExitCode.WIRE
        request = wire.read_request(req_fd)
        if request is None:
            code = ExitCode.ORPHAN
            return  # type: ignore[misc]  # finally exits
        os.close(req_fd)
        _rename(comm_fd, b"faas-call")
        code = ExitCode.INTERNAL
        apply_limits(request.limits, vm_bytes + request.size, hard)
        frame = run.execute(
            request,
            reserve,
            lambda data: wire.write_all(res_fd, data),
            {"result_fd": res_fd},
            _CALL_GLOBALS,
        )
        code = ExitCode.WIRE
        wire.write_all(res_fd, frame)
        code = ExitCode.OK
    finally:
        os._exit(code)


def lowering_only() -> None:
    """Check that this process can lower a hard rlimit but not raise it back (no
    CAP_SYS_RESOURCE): what lets a child set its own limits after its filter is in. Leaves
    RLIMIT_NOFILE one lower; raises OSError if the rule does not hold."""
    which = resource.RLIMIT_NOFILE
    hard = resource.getrlimit(which)[1]
    lower = hard - 1 if hard != resource.RLIM_INFINITY else 1 << 20
    try:
        resource.setrlimit(which, (lower, lower))
    except (OSError, ValueError) as exc:
        raise OSError(f"a child cannot lower its own rlimits: {exc}") from None
    try:
        resource.setrlimit(which, (lower + 1, lower + 1))
    except (OSError, ValueError):
        return
    raise OSError("a child can raise its own hard rlimits (CAP_SYS_RESOURCE?)")


def selftest(iso: Isolation, res_fd: int, workdir: str) -> NoReturn:
    """Isolate exactly as a real child does and report whether it worked (forker start-up):
    one byte 1 and the uid/gid, or 0 and the error text."""
    code = ExitCode.INTERNAL
    try:
        try:
            comm_fd = isolate_child(iso, (res_fd, res_fd), workdir)
            if comm_fd >= 0:
                os.close(comm_fd)
            if iso.lockdown is not None:  # oslayer (#9)
                iso.lockdown.enter()
            lowering_only()
            report = b"\x01%d %d" % (os.getuid(), os.getgid())
        except BaseException as exc:  # noqa: BLE001 - reported, not raised
            report = b"\x00" + run.describe(exc).encode("utf-8", "replace")
        wire.write_all(res_fd, report)
        code = ExitCode.OK
    finally:
        os._exit(code)
