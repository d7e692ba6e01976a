"""The project's vocabularies, shared by every layer (stdlib only).

:class:`ErrorKind`: every way a call can fail, whoever notices it (the sandbox, the executor,
the HTTP front end or a caller of Colonies). It is a ``str`` enum whose values are the strings
that travel: ``"<kind>: <message>"`` in a failed process's errors, ``error.kind`` in the CLI's
JSON, ``detail.kind`` in the HTTP API's error bodies.

:class:`ProcessState`: the Colonies process states (numbers on the wire) and the lowercase
names the HTTP API shows for them.

:class:`ExecutorState`: the Colonies executor states (numbers on the wire) and the lowercase
names ``faas-sandbox status`` shows for them.
"""

from __future__ import annotations

import enum

OK = "ok"  # the kind of a call that did not fail (not an ErrorKind)


class ErrorKind(str, enum.Enum):
    """The fixed vocabulary of ways a call can fail."""

    # The sandbox (engine): the function itself failed or was stopped.
    COMPILE = "compile"  # syntax error, or source refused by the restricted compiler
    FORBIDDEN = "forbidden"  # a guard refused an attribute, import or builtin at run time
    TIMEOUT = "timeout"  # wall-clock limit, or no result within the call's deadline
    CPU = "cpu"  # CPU-time limit (SIGXCPU)
    MEMORY = "memory"  # address-space limit (MemoryError)
    OUTPUT = "output"  # result not JSON-serialisable or over its cap; stdout flood
    RUNTIME = "runtime"  # the function raised; message carries type and text
    CRASH = "crash"  # the child died any other way, or the engine failed
    # The executor: the call could not be run.
    SPEC = "spec"  # the request or process spec is malformed
    NOT_FOUND = "not_found"  # no such function, revision, process or route
    UNAVAILABLE = "unavailable"  # the code store (ColonyFS/S3) could not be reached
    INTERRUPTED = "interrupted"  # the executor stopped before the call finished
    # The front door and callers of Colonies.
    UNAUTHORIZED = "unauthorized"  # no or unknown bearer token
    DENIED = "denied"  # the token may not call this function
    METHOD = "method"  # HTTP method not allowed on this path
    TOO_LARGE = "too_large"  # request body over the front end's cap
    MEDIA_TYPE = "media_type"  # request body is not application/json
    BUSY = "busy"  # too many calls in flight, or a token over its rate
    UNREACHABLE = "unreachable"  # the Colonies server could not be reached
    REFUSED = "refused"  # the Colonies server refused our request (key, colony, ...)
    NO_EXECUTOR = "no_executor"  # nobody picked the call up in time / none alive
    CANCELLED = "cancelled"  # the call was cancelled, or its client went away
    FAILED = "failed"  # a failure text we do not recognise

    def __str__(self) -> str:
        return self.value


class ProcessState(enum.IntEnum):
    """Colonies process states: the numbers on the wire (docs/protocol.md)."""

    WAITING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4

    @property
    def final(self) -> bool:
        """The process has ended (successful, failed or cancelled)."""
        return self >= ProcessState.SUCCESS

    @property
    def label(self) -> str:
        """The lowercase name the HTTP API and ``faas-sandbox result`` show."""
        return _LABELS[self]


_LABELS = {
    ProcessState.WAITING: "waiting",
    ProcessState.RUNNING: "running",
    ProcessState.SUCCESS: "successful",
    ProcessState.FAILED: "failed",
    ProcessState.CANCELLED: "cancelled",
}


class ExecutorState(enum.IntEnum):
    """Colonies executor states: the numbers on the wire (docs/protocol.md §4.2)."""

    PENDING = 0  # registered, not approved yet
    APPROVED = 1
    REJECTED = 2
    UNREGISTERED = 3  # removed; the row stays and its key is denied

    @property
    def label(self) -> str:
        """The lowercase name ``faas-sandbox status`` shows."""
        return self.name.lower()
