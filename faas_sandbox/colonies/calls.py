"""Submitting function calls through Colonies and reading how they ended.

Shared by the HTTP front end (``frontend/app.py``) and ``faas-sandbox call/result``::

    CallRequest --Backend.submit--> processid --Backend.wait/get--> CallResult

A :class:`Backend` hides Colonies (the real one is ``backend.ColoniesBackend``; unit
tests use a fake). Every request carries explicit ``maxexectime``, ``maxwaittime`` and
``maxretries``, so the server itself fails a call nobody picks up or that overruns.
:class:`CallResult` is this layer's one result type: the process as the server last reported
it, classified once (``kind``: "ok", an error kind, or pending). User failures are values
(``CallResult.kind``), never exceptions.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..errors import ColoniesError, SpecError
from ..kinds import OK, ErrorKind, ProcessState
from ..names import FunctionName
from ..policy import MIN_WALL_SECONDS, Policy
from .faults import fault
from .lifecycle import Revision
from .spec import decode_result

log = logging.getLogger(__name__)


WAIT_LIMIT_TEXT = "Maximum waiting time limit exceeded"
EXEC_LIMIT_TEXT = "Maximum execution time limit exceeded"
# The server's checker runs once a second on whole seconds: a limit fires 1-2 s late.
GRACE_SECONDS = 3.0
# Colonies' maxexectime is the wall limit plus this, so the executor (which closes a call
# before the server's deadline) can still grant the whole limit; the spec's kwargs.wall says
# the exact limit.
EXEC_MARGIN_S = 1.0
_KIND = re.compile(r"^([a-z][a-z_]{1,30}): (.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One call to submit. ``tutorial`` selects the tutorial's spec form (one string ``arg``)."""

    function: FunctionName  # checked where it entered (names.py)
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    wall_seconds: float = 10.0  # the limit the policy grants this call
    maxwaittime: int = 10  # seconds a call may wait for an executor
    maxretries: int = 0  # exec-timeout requeues; 0: the first expiry fails the call
    tutorial: bool = False
    pin: tuple[str, str] | None = None  # (file id, sha256) of the revision to run

    @property
    def maxexectime(self) -> int:
        """Whole seconds for Colonies: the wall limit plus EXEC_MARGIN_S, rounded up."""
        return max(1, math.ceil(self.wall_seconds + EXEC_MARGIN_S))

    @property
    def deadline_seconds(self) -> float:
        """How long a caller waits at most: waiting + running + the server checker's lag."""
        return self.maxwaittime + self.maxexectime + 2 * GRACE_SECONDS


def make_request(
    policy: Policy,
    function: FunctionName,
    args: tuple[Any, ...] = (),
    kwargs: Mapping[str, Any] | None = None,
    maxexectime: float | None = None,
    *,
    maxwaittime: int = 10,
    maxretries: int = 0,
    tutorial: bool = False,
) -> CallRequest:
    """A request whose limits come from ``policy.for_call(function, maxexectime)``.

    SpecError if ``maxexectime`` is not a finite number of at least 1 ms.
    """
    if maxexectime is not None and (
        isinstance(maxexectime, bool)
        or not isinstance(maxexectime, (int, float))
        or not math.isfinite(maxexectime)
        or maxexectime < MIN_WALL_SECONDS
    ):
        raise SpecError(
            f"maxexectime must be a number of seconds >= {MIN_WALL_SECONDS:g}, got {maxexectime!r}"
        )
    wall = policy.for_call(function, maxexectime).limits.wall_seconds
    return CallRequest(
        function, tuple(args), dict(kwargs or {}), wall, max(1, maxwaittime), maxretries, tutorial
    )


PENDING = ""  # the kind of a call whose process is still waiting or running
NO_REASON = "failed without a reason"


@dataclass(frozen=True, slots=True)
class CallResult:
    """One call as its caller sees it (the HTTP front end, ``faas-sandbox call/result``).

    ``state`` is the process state the server last reported (None: the call never reached
    it). ``kind`` is "ok", the error kind, or PENDING while the process waits or runs; a
    successful call's ``output`` holds the decoded values. The one result type of this layer.
    """

    kind: str
    output: list[Any] = field(default_factory=list)
    message: str = ""
    processid: str | None = None
    state: ProcessState | None = None
    function: str = ""  # spec.kwargs.function, when the process says
    revision: str = ""  # the pinned file id, when the spec carries one

    @classmethod
    def from_process(cls, process: Mapping[str, Any]) -> CallResult:
        """From a Colonies process JSON object (a dict, as the wire carries it): classified if
        its state is final, else PENDING."""
        spec = process.get("spec")
        kwargs = spec.get("kwargs") if isinstance(spec, Mapping) else None
        kwargs = kwargs if isinstance(kwargs, Mapping) else {}
        try:
            state = ProcessState(int(process.get("state", 0)))
        except (TypeError, ValueError):
            state = ProcessState.WAITING
        kind, output, message = PENDING, [], ""
        if state is ProcessState.SUCCESS:
            out = process.get("out")
            out = list(out) if isinstance(out, list) else []
            # the tutorial's spec form (kwargs.arg) gets its output as it is, not re-decoded
            kind, output = OK, out if "arg" in kwargs else decode_output(out)
        elif state is ProcessState.FAILED:
            errors = process.get("errors")
            kind, message = parse_error(
                str(errors[0]) if isinstance(errors, list) and errors else NO_REASON
            )
        elif state is ProcessState.CANCELLED:
            kind, message = ErrorKind.CANCELLED, "the call was cancelled"
        return cls(
            kind,
            output,
            message,
            str(process.get("processid", "")) or None,
            state,
            str(kwargs.get("function", ""))[:128],
            str(kwargs.get("revision", ""))[:128],
        )

    @property
    def ok(self) -> bool:
        return self.kind == OK

    @property
    def final(self) -> bool:
        """The server reports the process ended (successful, failed or cancelled)."""
        return self.state is not None and self.state.final

    @property
    def reasonless(self) -> bool:
        """FAILED without its reason yet (the server writes the two in separate statements)."""
        return self.state is ProcessState.FAILED and self.message == NO_REASON

    def to_json(self) -> dict[str, Any]:
        """``faas-sandbox call --json``: ``{ok, output, error: {kind, message} | null,
        processid}``."""
        error = None if self.ok else {"kind": self.kind, "message": self.message}
        return {"ok": self.ok, "output": self.output, "error": error, "processid": self.processid}

    def status_json(self) -> dict[str, Any]:
        """``GET /calls/{processid}`` and ``faas-sandbox result --json``: ``{processid, state,
        function, output, kind, message, revision}``; kind and message are null while pending."""
        pending = self.kind == PENDING
        return {
            "processid": self.processid,
            "state": self.state.label if self.state is not None else None,
            "function": self.function or None,
            "output": [] if pending else self.output,
            "kind": None if pending else self.kind,
            "message": None if pending else self.message or None,
            "revision": self.revision or None,
        }


class Backend(Protocol):
    """Where calls go. Methods block; they raise ColoniesError (read by ``faults.fault``)."""

    def submit(self, request: CallRequest) -> str:
        """Submit the call; return its process id."""
        ...

    def wait(
        self, processid: str, timeout: float, cancel: threading.Event | None = None
    ) -> CallResult:
        """Return as soon as the process is final, ``cancel`` is set, or after ``timeout`` s."""
        ...

    def remove(self, processid: str) -> None:
        """Remove a process that is still waiting (the server refuses a running one)."""
        ...

    def get(self, processid: str) -> CallResult:
        """The process as it is now."""
        ...

    def alive_executors(self) -> int:
        """Executors of the backend's type seen alive (the server's executor list)."""
        ...

    def current(self, name: FunctionName) -> Revision | None:
        """The function's newest revision (to pin a call to), or None if not deployed."""
        ...

    def history(self, name: FunctionName) -> list[Revision]:
        """The function's revisions, oldest first; [] if never deployed."""
        ...

    def functions(self) -> list[dict[str, Any]]:
        """Every deployed function (name, size, revisions, deployed_at, fileid)."""
        ...

    def logs(self, processid: str) -> list[str]:
        """The process log lines (the call's captured output), oldest first."""
        ...

    def ping(self) -> None:
        """Return if the Colonies server answers a signed request; raise otherwise."""
        ...


def parse_error(text: str) -> tuple[str, str]:
    """``"<kind>: <message>"`` -> (kind, message); the server's own texts get kinds too."""
    text = text.strip()
    if text.startswith(WAIT_LIMIT_TEXT):
        return ErrorKind.NO_EXECUTOR, "no executor picked the call up within maxwaittime"
    if text.startswith(EXEC_LIMIT_TEXT):
        return ErrorKind.TIMEOUT, "the server's maxexectime expired before the executor answered"
    match = _KIND.match(text)
    if match:
        return match.group(1), match.group(2)
    return ErrorKind.FAILED, text


def decode_output(output: list[Any]) -> list[Any]:
    """Undo ``spec.encode_result`` element by element (see docs/protocol.md, Results)."""
    return [decode_result(item) for item in output]


def at_deadline(result: CallResult, request: CallRequest) -> CallResult:
    """A result our wait for ``request`` gave up on while still PENDING: no executor took the
    call, or it gave no result in time; any other result as it is."""
    if result.kind != PENDING:
        return result
    if result.state is ProcessState.WAITING:
        return replace(
            result,
            kind=ErrorKind.NO_EXECUTOR,
            message=f"no executor picked the call up within {request.deadline_seconds:g} s",
        )
    return replace(
        result, kind=ErrorKind.TIMEOUT, message=f"no result within {request.deadline_seconds:g} s"
    )


def run_call(
    backend: Backend, request: CallRequest, cancel: threading.Event | None = None
) -> CallResult:
    """Submit, wait up to the request's deadline. Never raises for Colonies faults.

    ``cancel`` set (the HTTP client hung up) ends the wait early; a call still waiting in the
    queue is then removed, so no executor runs it for nobody.
    """
    try:
        processid = backend.submit(request)
        result = backend.wait(processid, request.deadline_seconds, cancel)
        if cancel is not None and cancel.is_set() and result.state is ProcessState.WAITING:
            try:
                backend.remove(processid)
            except ColoniesError as exc:  # assigned meanwhile: it runs
                log.info("call %s: client gone, not removed from the queue: %s", processid, exc)
            return CallResult(ErrorKind.CANCELLED, [], "the client went away", processid)
    except ColoniesError as exc:
        kind, message = fault(exc, "the call")
        return CallResult(kind, [], message)
    return at_deadline(result, request)


def poll_until_final(
    fetch: Callable[[], CallResult],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    first: float = 0.005,
    cap: float = 0.1,
    cancel: threading.Event | None = None,
) -> CallResult:
    """Call ``fetch`` until the state is final or ``timeout`` passes; back off 5 ms -> 100 ms."""
    deadline = clock() + timeout
    delay = first
    while True:
        result = fetch()
        left = deadline - clock()
        if result.final or left <= 0 or (cancel is not None and cancel.is_set()):
            return result
        sleep(min(delay, left))
        delay = min(cap, delay * 2)
