"""Pure functions that decide a call's outcome, unit-tested with literal values.

:func:`admit` refuses an oversize call before anything runs; :func:`classify` turns what the
caller saw (a RESULT frame, or the child's wait status from the forker, plus what we did)
into an :class:`~faas_sandbox.engine.outcome.Outcome`; :func:`refusal` says whether a failed
compile may be cached as refused, and under which limit.

Refusals before the call, and their kinds: source over ``max_source_bytes`` is ``compile``
(no compiler sees it); arguments that are not JSON or over ``max_args_bytes`` are ``runtime``
with a ``ValueError: ...`` message, like a call with the wrong arguments.

``crash`` means only that the child died without a (well-formed) RESULT frame.
"""

from __future__ import annotations

import enum
import os
import signal
from dataclasses import dataclass

from .. import element
from ..kinds import OK, ErrorKind
from ..policy import Limits
from ..sizes import args_over, source_over
from . import wire
from .outcome import Outcome, Usage


class Killed(str, enum.Enum):
    """Why the caller SIGKILLed a child (None: it did not)."""

    TIMEOUT = "timeout"
    OVERFLOW = "overflow"
    SHUTDOWN = "shutdown"


class ExitCode(enum.IntEnum):
    """The only exit codes a child uses; anything else came from somewhere we did not expect."""

    OK = 0  # a result frame was written
    INTERNAL = 70  # a bug in the child's code
    WIRE = 71  # the request could not be read or the result could not be written
    SETUP = 72  # isolation could not be set up (session, fds, uid, seccomp)
    ORPHAN = 73  # the forker went away (or the spare was dropped) before a request came


_EXIT_TEXT = {
    ExitCode.INTERNAL: "hit an internal error",
    ExitCode.WIRE: "could not read its request or write its result",
    ExitCode.SETUP: "could not set up its isolation (uid, session, fds or seccomp)",
    ExitCode.ORPHAN: "lost its forker before the call started",
}
OVERFLOW_TEXT = "the child sent more bytes than its result and stdout caps allow"


@dataclass(frozen=True, slots=True)
class Seen:
    """Everything the caller knows when a call is over."""

    result: wire.Result | None = None  # a well-formed RESULT frame
    frame_error: str | None = None  # bytes that were not a whole frame at EOF
    malformed: str | None = None  # a whole frame that was not what it may be
    status: int | None = None  # the wait status the forker reported (None: unknown)
    killed: Killed | None = None  # a SIGKILL we sent, and why
    compiling: bool = False  # the child got source and had not finished compiling it
    gone: str | None = None  # the forker is gone: why (status will never come)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A compile failure worth remembering: ``limit`` is the Limits field it blew (then
    ``value`` is the limit it blew; a call with a higher one tries again) or "" (always)."""

    message: str
    limit: str = ""
    value: float = 0.0

    def applies(self, limits: Limits) -> bool:
        return not self.limit or getattr(limits, self.limit) <= self.value


def admit(
    size: int, args_json_bytes: int, max_source_bytes: int, max_args_bytes: int
) -> Outcome | None:
    """A refusal for an oversize call (sizes in bytes of UTF-8, rules: sizes.py), or None."""
    if (why := source_over(size, max_source_bytes)) is not None:
        return Outcome.failure(ErrorKind.COMPILE, why)
    if (why := args_over(args_json_bytes, max_args_bytes)) is not None:
        return Outcome.failure(ErrorKind.RUNTIME, f"ValueError: {why}")
    return None


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _cpu_text(seen: Seen, limits: Limits) -> str:
    what = "compile exceeded its CPU limit" if seen.compiling else "CPU-time limit"
    return f"{what} of {limits.cpu_seconds} s" + ("" if seen.compiling else " exceeded")


def classify(seen: Seen, usage: Usage, limits: Limits, as_element: bool = False) -> Outcome:
    """The outcome of one call. A well-formed RESULT frame is the verdict (the work
    finished); otherwise our own kill and the wait status decide. ``as_element``: the call
    asked for its result as a Colonies output element, which must be one (checked, not
    decoded), since it is sent on as it is."""
    res = seen.result
    if res is not None:
        if res.kind == OK and as_element:
            if not element.well_formed(res.value):
                return Outcome.failure(
                    ErrorKind.CRASH, "sent a malformed result (not one output element)", usage=usage
                )
            return Outcome(True, stdout=res.stdout, usage=usage, element=res.value)
        if res.kind == OK:
            return Outcome(True, stdout=res.stdout, usage=usage, value_json=res.value)
        return Outcome.failure(ErrorKind(res.kind), res.message, res.stdout, usage)
    if seen.malformed is not None:
        return Outcome.failure(
            ErrorKind.CRASH, f"sent a malformed result ({seen.malformed})", usage=usage
        )
    if seen.killed is Killed.OVERFLOW:
        return Outcome.failure(ErrorKind.OUTPUT, OVERFLOW_TEXT, usage=usage)
    cpu_kind = ErrorKind.COMPILE if seen.compiling else ErrorKind.CPU
    if seen.killed is Killed.TIMEOUT:
        if seen.compiling:
            return Outcome.failure(
                ErrorKind.COMPILE,
                f"compile exceeded its wall-clock limit of {limits.wall_seconds:g} s",
                usage=usage,
            )
        return Outcome.failure(
            ErrorKind.TIMEOUT,
            f"wall-clock limit of {limits.wall_seconds:g} s exceeded",
            usage=usage,
        )
    if seen.status is None:
        return Outcome.failure(ErrorKind.CRASH, seen.gone or "sandbox forker died", usage=usage)
    status = seen.status
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return Outcome.failure(cpu_kind, _cpu_text(seen, limits), usage=usage)
        if sig == signal.SIGKILL:
            if seen.killed is not None:
                return Outcome.failure(
                    ErrorKind.CRASH, "killed by the sandbox: it is shutting down", usage=usage
                )
            # RLIMIT_CPU is set soft == hard, so the kernel ends a child at its CPU limit with
            # SIGKILL (no SIGXCPU first); the forker reports the clock that limit is checked
            # against (forker.limit_clock), so such a child's CPU time is >= the limit.
            if usage.cpu_s >= limits.cpu_seconds:
                return Outcome.failure(cpu_kind, _cpu_text(seen, limits), usage=usage)
            return Outcome.failure(
                ErrorKind.CRASH,
                "killed by SIGKILL not sent by the sandbox (likely the kernel OOM killer)",
                usage=usage,
            )
        return Outcome.failure(
            ErrorKind.CRASH, f"killed by signal {_signal_name(sig)}", usage=usage
        )
    code = os.waitstatus_to_exitcode(status)
    if seen.frame_error:
        return Outcome.failure(
            ErrorKind.CRASH,
            f"exited with code {code} after sending a malformed result ({seen.frame_error})",
            usage=usage,
        )
    if code in _EXIT_TEXT:
        return Outcome.failure(
            ErrorKind.CRASH,
            f"sandbox child {_EXIT_TEXT[ExitCode(code)]} (exit code {code})",
            usage=usage,
        )
    return Outcome.failure(
        ErrorKind.CRASH, f"exited with code {code} without a result", usage=usage
    )


def refusal(seen: Seen, outcome: Outcome, limits: Limits) -> Refusal | None:
    """What to cache for a source whose compile failed, or None (nothing to cache)."""
    if outcome.error_kind is not ErrorKind.COMPILE:
        return None
    res = seen.result
    if res is not None:
        if not seen.compiling:
            return None  # cannot happen: a cached code object does not fail to compile
        if res.flags & wire.COMPILE_LIMIT:
            return Refusal(outcome.message, "memory_mb", limits.memory_mb)
        return Refusal(outcome.message)
    if seen.killed is Killed.TIMEOUT:
        # redteam: a wall-clock kill says something about the source only if the child was
        # busy compiling. A child starved by a loaded host (or stopped) used almost no CPU;
        # caching that would refuse its function from then on, on an idle host too.
        if outcome.usage.cpu_s < limits.wall_seconds / 2:
            return None
        return Refusal(outcome.message, "wall_seconds", limits.wall_seconds)
    return Refusal(outcome.message, "cpu_seconds", limits.cpu_seconds)
