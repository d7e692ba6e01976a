"""Everything a sandbox child runs after fork, and nothing else.

A child is forked by the forker, either ahead of time (a *spare*) or on demand; both follow
the same path:

1. :func:`isolate`: own session, fds 0-2 on /dev/null and every other inherited fd closed but
   its two pipes, empty environment, an empty cwd, supplementary groups dropped and the
   sandbox uid/gid taken (when root), not dumpable, SIGKILL on forker death (set *after* the
   uid change, which clears it), RLIMIT_CORE 0, no_new_privs and the seccomp filter.
2. Block reading one request frame (a spare may wait here for a long time), then
   :func:`apply_limits`: RLIMIT_CPU (soft n, hard n+1 so SIGXCPU comes first), RLIMIT_AS
   (current size + memory_mb), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC. Lowering a limit
   never needs privilege, so a spare can apply the limits of whichever call it gets.
3. :func:`execute`: fresh guarded globals, exec the cached code object (inherited from the
   forker, compiled before this child was forked), call, classify, JSON-encode the result.
4. Write one frame on the result pipe and leave through ``os._exit`` in ``finally``.

Everything used here is imported by the forker before any fork: after the uid change the
child may be unable to read the Python installation, so a lazy import would fail. The child
never logs; every fact goes back in its result frame or its exit code (:class:`ExitCode`).
"""

from __future__ import annotations

import enum
import json
import mmap
import os
import resource
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any, NoReturn

from .. import probes
from . import wire
from .guards import GuardViolation, OutputOverflow, RunState, compile_source, make_globals
from ..seccomp_filter import set_dumpable, set_name, set_no_new_privs, set_parent_death_signal
from .isolation import Lockdown

MAX_RESULT_DEPTH = 200  # nesting levels of a result (so every reader can decode it)
MAX_MESSAGE_CHARS = 2000  # error text sent back
RESERVE_BYTES = 1 << 20  # address space freed on MemoryError so the child can still report
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MAX_FD = max(os.sysconf("SC_OPEN_MAX"), 1024)


# A trusted call an idle spare runs once before it waits: it touches (copy-on-write faults)
# the pages a real call will touch, so those ~150 faults (about 0.4 ms here) are paid while
# the spare is idle, not on the call's critical path.
_WARM_CODE = compile_source("def f(x, y=1):\n    s = [x, y]\n    print(x)\n    return {'v': s}\n")
_WARM_REQUEST = wire.encode({
    "sha": "", "function": "f", "args": "[[1.5],{\"y\":2}]", "modules": ["math", "json"],
    "limits": {"wall_seconds": 1.0, "cpu_seconds": 1, "memory_mb": 64, "max_result_bytes": 1024,
               "max_stdout_bytes": 1024, "max_open_files": 16, "max_processes": 1,
               "file_size_bytes": 0},
})


class ExitCode(enum.IntEnum):
    """The only exit codes a child uses; anything else came from somewhere we did not expect."""

    OK = 0  # a result frame was written
    INTERNAL = 70  # a bug in this module
    WIRE = 71  # the request could not be read or the result could not be written
    SETUP = 72  # isolation could not be set up (session, fds, uid, seccomp)
    ORPHAN = 73  # the forker went away (or retired this spare) before a request came


@dataclass(frozen=True, slots=True)
class Isolation:
    """What every child of one forker does before it runs anything."""

    forker_pid: int
    drop_to: tuple[int, int] | None  # (uid, gid) to become; None when not running as root
    lockdown: Lockdown | None  # oslayer (#9): Landlock + allow-list filter, entered per call


class _Orphaned(Exception):
    pass


class _ResultRefused(Exception):
    """The return value cannot be sent back (kind ``output``)."""


def isolate(iso: Isolation, keep: tuple[int, int], workdir: str) -> None:
    """Cut the child off from the forker's session, files, environment and privileges."""
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
    os.environ.clear()
    os.chdir(workdir)
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
    set_no_new_privs()


def _lower(which: int, soft: int, hard: int | None = None) -> None:
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(which, (soft, hard))


def apply_limits(limits: dict[str, Any]) -> None:
    """Per-call rlimits; RLIMIT_AS is headroom over the size of this process right now."""
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    try:
        vm_bytes = int(os.read(fd, 128).split()[0]) * _PAGE
    finally:
        os.close(fd)
    _lower(resource.RLIMIT_AS, vm_bytes + (int(limits["memory_mb"]) << 20))
    cpu = int(limits["cpu_seconds"])
    _lower(resource.RLIMIT_CPU, cpu, cpu + 1)
    _lower(resource.RLIMIT_FSIZE, int(limits["file_size_bytes"]))
    _lower(resource.RLIMIT_NPROC, int(limits["max_processes"]))
    _lower(resource.RLIMIT_NOFILE, int(limits["max_open_files"]))


def _describe(exc: BaseException) -> str:
    """``"TypeName: text"``; runs user code (``__str__``), so it must not raise."""
    try:
        name = type(exc).__name__
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return f"{type(exc).__name__}: <unprintable exception>"
    message = f"{name}: {text}" if text else name
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."


def stack_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    return depth


def encode_result(value: Any, max_bytes: int) -> bytes:
    """The JSON of a return value, or :class:`_ResultRefused` saying why not."""
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(stack_depth() + MAX_RESULT_DEPTH + 10)  # + json.dumps frames
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except RecursionError:
        raise _ResultRefused(f"result nests deeper than {MAX_RESULT_DEPTH} levels "
                             "(or is cyclic)") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise _ResultRefused(f"result is not JSON-serialisable: {_describe(exc)}") from None
    finally:
        sys.setrecursionlimit(old_limit)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")
    if len(data) > max_bytes:
        raise _ResultRefused(f"result is {len(data)} bytes of JSON, over the limit of "
                             f"{max_bytes} (max_result_bytes)")
    return data


def _run(request: dict[str, Any], code: CodeType | None, state: RunState,
         ctx: dict[str, int]) -> bytes | tuple[str, str]:
    """Run the function; the encoded result or ``(kind, message)``."""
    try:
        args, kwargs = json.loads(request["args"])
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("expected [args, kwargs]")
    except (ValueError, RecursionError) as exc:
        return "runtime", f"ValueError: arguments could not be decoded: {_describe(exc)}"
    function = request["function"]
    if code is None:
        value = probes.PROBES[request["probe"]]({**ctx, "args": kwargs})  # oslayer: kwargs
    else:
        g = make_globals(state, frozenset(request["modules"]))
        exec(code, g)
        f = g.get(function)
        if f is None or not callable(f):
            return "runtime", f"NameError: source defines no function {function!r}"
        value = f(*args, **kwargs)
    return encode_result(value, int(request["limits"]["max_result_bytes"]))


def execute(request: dict[str, Any], lookup: Callable[[str], CodeType | None],
            reserve: list[Any], ctx: dict[str, int] | None = None) -> bytes:
    """Run one call and return its complete result frame (header included).

    Runs in-process in unit tests (benign code only), after :func:`apply_limits` in a child.
    A code object missing from ``lookup`` is an engine bug: LookupError, exit INTERNAL.
    """
    code = None
    if "probe" not in request:
        code = lookup(request["sha"])
        if code is None:
            raise LookupError("code object missing from the inherited cache")
    limits = request["limits"]
    state = RunState(int(limits["max_stdout_bytes"]))
    memory_text = f"memory limit exceeded (memory_mb={limits['memory_mb']})"
    fallback = wire.pack(wire.dumps({"ok": False, "kind": "memory", "message": memory_text,
                                     "stdout": ""}))
    try:
        try:
            result = _run(request, code, state, ctx or {})
        except _ResultRefused as exc:
            result = ("output", str(exc))
        except MemoryError:
            reserve.clear()
            result = ("memory", memory_text)
        except GuardViolation as exc:
            result = ("forbidden", str(exc))
        except OutputOverflow as exc:
            result = ("output", str(exc))
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything
            result = ("runtime", _describe(exc))
        # Sticky facts win: a refusal or a flood that user code caught still ends the call.
        if state.violations:
            result = ("forbidden", state.violations[0][:MAX_MESSAGE_CHARS])
        elif state.stdout_overflow:
            result = ("output", f"print output passed its cap of {state.max_stdout_bytes} "
                                "bytes (max_stdout_bytes)")
        stdout = wire.dumps(state.stdout())
        if isinstance(result, bytes):
            body = b'{"ok":true,"stdout":' + stdout + b',"value":' + result + b"}"
        else:
            kind, message = result
            body = wire.dumps({"ok": False, "kind": kind, "message": message,
                               "stdout": state.stdout()})
        return wire.pack(body)
    except MemoryError:
        reserve.clear()
        return fallback


def with_usage(frame: bytes) -> bytes:
    """The frame with this process's own usage so far added (``"usage": {cpu_s,
    max_rss_bytes}``): the forker can then answer before the exit (~0.4 ms of page-table
    teardown) and the reap. Unchanged if memory is too short to rebuild it."""
    try:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        extra = b',"usage":{"cpu_s":%s,"max_rss_bytes":%d}}' % (
            repr(ru.ru_utime + ru.ru_stime).encode(), ru.ru_maxrss * 1024)
        return wire.pack(frame[wire.HEADER.size:-1] + extra)
    except MemoryError:
        return frame


def warm_up() -> None:
    """Run the warm-up call and read /proc/self/statm once; results are discarded."""
    with_usage(execute(wire.loads(_WARM_REQUEST[wire.HEADER.size:]),
                       lambda sha: _WARM_CODE.code, [b""]))
    fd = os.open("/proc/self/statm", os.O_RDONLY)
    os.read(fd, 128)
    os.close(fd)
    resource.getrlimit(resource.RLIMIT_AS)


def serve(iso: Isolation, req_fd: int, res_fd: int, workdir: str,
          lookup: Callable[[str], CodeType | None]) -> NoReturn:
    """The whole life of a child: isolate, wait for one request, run it, answer, exit."""
    code = ExitCode.INTERNAL
    try:
        try:
            isolate(iso, (req_fd, res_fd), workdir)
        except _Orphaned:
            code = ExitCode.ORPHAN
            return  # type: ignore[misc]  # finally exits
        except OSError:
            code = ExitCode.SETUP
            return  # type: ignore[misc]
        set_name(b"faas-spare")
        if not select.select([req_fd], [], [], 0)[0]:
            warm_up()  # only while idle: a child whose request is waiting goes straight on
        code = ExitCode.WIRE
        request = wire.read_frame(req_fd, wire.MAX_CONTROL_FRAME)
        if request is None:
            code = ExitCode.ORPHAN
            return  # type: ignore[misc]
        set_name(b"faas-call")
        code = ExitCode.INTERNAL
        # An anonymous mapping takes address space (what RLIMIT_AS counts) without touching a
        # page; bytes(n) was calloc'ed from the heap and memset 256 pages on every call.
        reserve = [mmap.mmap(-1, RESERVE_BYTES)]
        apply_limits(request["limits"])
        if iso.lockdown is not None:  # oslayer (#9): from here on no path, socket or new fd
            code = ExitCode.SETUP
            iso.lockdown.enter()
            code = ExitCode.INTERNAL
        frame = with_usage(execute(request, lookup, reserve, {"result_fd": res_fd}))
        code = ExitCode.WIRE
        wire.write_all(res_fd, frame)
        code = ExitCode.OK
    finally:
        os._exit(code)


def selftest(iso: Isolation, res_fd: int, workdir: str) -> NoReturn:
    """Isolate exactly as a real child does and report whether it worked (forker start-up)."""
    code = ExitCode.INTERNAL
    try:
        try:
            isolate(iso, (res_fd, res_fd), workdir)
            if iso.lockdown is not None:  # oslayer (#9)
                iso.lockdown.enter()
            report: dict[str, Any] = {"ok": True, "uid": os.getuid(), "gid": os.getgid()}
        except BaseException as exc:  # noqa: BLE001 - reported, not raised
            report = {"ok": False, "error": _describe(exc)}
        wire.write_frame(res_fd, report)
        code = ExitCode.OK
    finally:
        os._exit(code)


def bare(res_fd: int) -> NoReturn:
    """The benchmark floor: answer an empty frame at once, no isolation, no work."""
    try:
        os.write(res_fd, wire.pack(b"{}"))
    finally:
        os._exit(0)
