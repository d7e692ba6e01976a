"""Forker-side process primitives and the pure functions that decide a call's outcome.

Only this module forks, kills and reaps sandbox children (the forker calls it). A child is
watched through two fds in the forker's poll loop: its result pipe (read while it runs,
never ``waitpid`` first, with a byte cap) and its pidfd (readable once it has exited). Kills
go to the whole process group with SIGKILL, "already gone" tolerated; every child is reaped
with ``wait4`` for its rusage.

Pure and unit-tested with literal values: :func:`admit` (refusals before anything runs),
:func:`parse_result` (the child's frame, treated as hostile) and :func:`classify` (wait status
+ frame + what we did -> :class:`~faas_sandbox.outcome.Outcome`).

Refusals before the call, and their kinds: source over ``max_source_bytes`` is ``compile``
(the compiler never sees it); arguments that are not JSON or over ``max_args_bytes`` are
``runtime`` with a ``ValueError: ...`` message, like a call with the wrong arguments.
"""

from __future__ import annotations

import enum
import errno
import os
import signal
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from types import CodeType
from typing import Any

from . import child, wire
from .outcome import ErrorKind, Outcome, Usage

CHILD_KINDS = frozenset({"compile", "forbidden", "memory", "output", "runtime"})
_SLACK_BYTES = 64 * 1024


class Killed(str, enum.Enum):
    """Why the forker SIGKILLed a child (None in ExitInfo: it did not)."""

    TIMEOUT = "timeout"
    OVERFLOW = "overflow"
    SHUTDOWN = "shutdown"
    RETIRED = "retired"
    ANSWERED = "answered"  # answered from its frame; killed so that it surely exits


def result_cap(max_result_bytes: int, max_stdout_bytes: int) -> int:
    """Most bytes a well-behaved child can send: result, stdout escaped as JSON, slack."""
    return max_result_bytes + 6 * max_stdout_bytes + _SLACK_BYTES


def admit(size: int, args_json_bytes: int, max_source_bytes: int,
          max_args_bytes: int) -> Outcome | None:
    """A refusal for an oversize call (sizes in bytes of UTF-8), or None."""
    if size > max_source_bytes:
        return Outcome.failure(ErrorKind.COMPILE, f"source is {size} bytes, over the limit of "
                               f"{max_source_bytes} (max_source_bytes)")
    if args_json_bytes > max_args_bytes:
        return Outcome.failure(ErrorKind.RUNTIME, f"ValueError: arguments are {args_json_bytes} "
                               f"bytes of JSON, over the limit of {max_args_bytes} "
                               "(max_args_bytes)")
    return None


def parse_result(data: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """``(frame, None)`` for one well-formed result frame, else ``(None, why)``; never raises.

    Runs in the forker (single-threaded), so it may bound JSON nesting with the recursion
    limit: a result deeper than the child itself allows is malformed.
    """
    if not data:
        return None, None
    if len(data) < wire.HEADER.size or wire.HEADER.unpack_from(data)[0] != len(data) - 4:
        return None, f"{len(data)} bytes that are not exactly one frame"
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(child.stack_depth() + child.MAX_RESULT_DEPTH + 40)
    try:
        frame = wire.loads(data[4:])
    except wire.WireError as exc:
        return None, str(exc)
    finally:
        sys.setrecursionlimit(old)
    if not isinstance(frame, dict) or not isinstance(frame.get("stdout"), str):
        return None, "frame is not a result"
    if frame.get("ok") is True and "value" in frame:
        return frame, None
    if (frame.get("ok") is False and frame.get("kind") in CHILD_KINDS
            and isinstance(frame.get("message"), str)):
        return frame, None
    return None, "frame is not a result"


def self_usage(frame: dict[str, Any]) -> tuple[float, int] | None:
    """``(cpu_s, max_rss_bytes)`` the child measured on itself just before sending its frame
    (``getrusage(RUSAGE_SELF)``), or None when the frame has none or it is malformed."""
    usage = frame.get("usage")
    if not isinstance(usage, dict):
        return None
    cpu, rss = usage.get("cpu_s"), usage.get("max_rss_bytes")
    if (type(cpu) not in (int, float) or type(rss) is not int or not 0 <= cpu < 1e9
            or rss < 0):
        return None
    return float(cpu), rss


@dataclass(frozen=True, slots=True)
class ExitInfo:
    """Everything the forker knows when a child is gone."""

    status: int  # raw wait status from wait4
    frame: dict[str, Any] | None = None  # a well-formed result frame
    frame_error: str | None = None  # why the bytes received were not one
    killed: Killed | None = None  # a SIGKILL we sent, and why


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_EXIT_TEXT = {
    child.ExitCode.INTERNAL: "hit an internal error",
    child.ExitCode.WIRE: "could not read its request or write its result",
    child.ExitCode.SETUP: "could not set up its isolation (uid, session, fds or seccomp)",
    child.ExitCode.ORPHAN: "lost its forker before the call started",
}


def classify(info: ExitInfo, usage: Usage, wall_seconds: float, cpu_seconds: int) -> Outcome:
    """The outcome of one call. A complete, well-formed frame is the verdict (the work
    finished); otherwise the wait status and our own kill decide."""
    if info.frame is not None:
        stdout = info.frame["stdout"]
        if info.frame["ok"]:
            return Outcome(True, info.frame["value"], None, "", stdout, usage)
        return Outcome.failure(ErrorKind(info.frame["kind"]), info.frame["message"], stdout,
                               usage)
    if info.killed is Killed.OVERFLOW:
        return Outcome.failure(ErrorKind.OUTPUT, "the child sent more bytes than its result "
                               "and stdout caps allow", usage=usage)
    status = info.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return Outcome.failure(ErrorKind.CPU, f"CPU-time limit of {cpu_seconds} s exceeded",
                                   usage=usage)
        if sig == signal.SIGKILL:
            if info.killed is Killed.TIMEOUT:
                return Outcome.failure(ErrorKind.TIMEOUT, f"wall-clock limit of {wall_seconds:g}"
                                       " s exceeded", usage=usage)
            if info.killed is not None:
                return Outcome.failure(ErrorKind.CRASH, "killed by the sandbox: it is shutting "
                                       "down", usage=usage)
            if usage.cpu_s >= cpu_seconds:  # the hard RLIMIT_CPU (soft + 1) sends SIGKILL
                return Outcome.failure(ErrorKind.CPU, f"CPU-time limit of {cpu_seconds} s "
                                       "exceeded", usage=usage)
            return Outcome.failure(ErrorKind.CRASH, "killed by SIGKILL not sent by the sandbox "
                                   "(likely the kernel OOM killer)", usage=usage)
        return Outcome.failure(ErrorKind.CRASH, f"killed by signal {_signal_name(sig)}",
                               usage=usage)
    code = os.waitstatus_to_exitcode(status)
    if info.frame_error:
        return Outcome.failure(ErrorKind.CRASH, f"exited with code {code} after sending a "
                               f"malformed result ({info.frame_error})", usage=usage)
    if code in _EXIT_TEXT:
        return Outcome.failure(ErrorKind.CRASH, f"sandbox child {_EXIT_TEXT[code]} (exit code "
                               f"{code})", usage=usage)
    return Outcome.failure(ErrorKind.CRASH, f"exited with code {code} without a result",
                           usage=usage)


class ChildProc:
    """One forked child as the forker sees it: fds to watch, a deadline, bytes received."""

    __slots__ = ("pid", "pidfd", "req_fd", "res_fd", "workdir", "call", "deadline",
                 "started", "buf", "cap", "killed", "status", "rusage", "bare", "answered")

    def __init__(self, pid: int, req_fd: int, res_fd: int, workdir: str | None,
                 bare: bool = False) -> None:
        self.pid = pid
        self.req_fd = req_fd  # -1 once the request was sent
        self.res_fd = res_fd  # -1 once EOF or closed
        self.workdir = workdir
        self.bare = bare
        self.call: dict[str, Any] | None = None  # the parent's request once dispatched
        self.deadline = float("inf")
        self.started = 0.0
        self.buf = bytearray()
        self.cap = 1 << 16
        self.killed: Killed | None = None
        self.status: int | None = None
        self.rusage: Any = None
        self.answered = False  # the parent has its outcome; only the reap is left
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except OSError:  # kernel < 5.3: the loop polls wait4 instead
            self.pidfd = None

    def dispatch(self, call: dict[str, Any], request: bytes, cap: int, wall: float) -> None:
        """Hand the request to the child; the wall clock starts now."""
        self.call = call
        self.cap = cap
        self.started = time.monotonic()
        self.deadline = self.started + wall
        try:
            wire.write_all(self.req_fd, request)
        except OSError:  # the child died first; its exit status tells the story
            pass
        self.close_request()

    def close_request(self) -> None:
        if self.req_fd >= 0:
            os.close(self.req_fd)
            self.req_fd = -1

    def kill(self, reason: Killed) -> None:
        """SIGKILL the child's process group (and the child, in case setsid had not run).

        The first reason is kept even if the child is already reaped (an overflow found while
        draining after its exit is still an overflow)."""
        if self.killed is None:
            self.killed = reason
        if self.status is not None:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # safe: not reaped, so the pid is still ours

    def drain(self) -> bool:
        """Read what the child sent so far; False at EOF. Kills it on overflow."""
        while self.res_fd >= 0:
            try:
                chunk = os.read(self.res_fd, 1 << 16)
            except BlockingIOError:
                return True
            except OSError:
                chunk = b""
            if not chunk:
                return False
            if len(self.buf) + len(chunk) > self.cap:
                self.buf.clear()
                self.kill(Killed.OVERFLOW)
                return False
            self.buf += chunk
        return False

    def frame_complete(self) -> bool:
        """True when exactly one whole frame has arrived (the child is about to exit)."""
        buf = self.buf
        return len(buf) >= wire.HEADER.size and wire.HEADER.unpack_from(buf)[0] == len(buf) - 4

    def try_reap(self) -> bool:
        """wait4 without blocking; True once the child is reaped."""
        if self.status is not None:
            return True
        try:
            pid, status, rusage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, rusage = self.pid, 0, None
        if pid == 0:
            return False
        self.status, self.rusage = status, rusage
        return True

    def usage(self, now: float) -> Usage:
        ru = self.rusage
        if ru is None:
            return Usage(wall_s=now - self.started)
        return Usage(wall_s=now - self.started, cpu_s=ru.ru_utime + ru.ru_stime,
                     max_rss_bytes=ru.ru_maxrss * 1024)

    def close(self) -> None:
        for fd in (self.req_fd, self.res_fd, self.pidfd):
            if fd is not None and fd >= 0:
                with suppress(OSError):
                    os.close(fd)
        self.req_fd = self.res_fd = -1
        self.pidfd = None
        if self.workdir:
            with suppress(OSError):
                os.rmdir(self.workdir)


def fork_child(iso: child.Isolation, workdir: str,
               lookup: Callable[[str], CodeType | None]) -> ChildProc:
    """Fork a child that isolates itself and then waits for one request."""
    req_r, req_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        child.serve(iso, req_r, res_w, workdir, lookup)
    os.close(req_r)
    os.close(res_w)
    os.set_blocking(res_r, False)
    return ChildProc(pid, req_w, res_r, workdir)


def fork_bare() -> ChildProc:
    """The benchmark floor: fork, one tiny frame on a pipe, exit."""
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        child.bare(res_w)
    os.close(res_w)
    os.set_blocking(res_r, False)
    return ChildProc(pid, -1, res_r, None, bare=True)


def reap_blocking(proc: ChildProc) -> None:
    """Reap a child already SIGKILLed (shutdown); never raises."""
    while proc.status is None:
        try:
            _, proc.status, proc.rusage = os.wait4(proc.pid, 0)
        except ChildProcessError:
            proc.status = 0
        except OSError as exc:  # pragma: no cover
            if exc.errno != errno.EINTR:
                proc.status = 0


def dumps_outcome(call_id: int, pid: int, outcome: Outcome) -> bytes:
    """The forker's answer to the parent for one call."""
    msg = outcome.to_json()
    msg["id"] = call_id
    msg["pid"] = pid
    try:
        return wire.encode(msg)
    except (ValueError, TypeError, RecursionError) as exc:  # pragma: no cover - defence
        fallback = Outcome.failure(ErrorKind.OUTPUT, f"result could not be re-encoded: {exc}",
                                   usage=outcome.usage).to_json()
        fallback.update(id=call_id, pid=pid)
        return wire.encode(fallback)

