"""Every exception faas_sandbox raises on purpose.

User-code failures are *values* (:class:`faas_sandbox.engine.outcome.Outcome`), never exceptions.
Exceptions are for engine and configuration faults::

    SandboxError                 base of everything we raise on purpose
    +- PolicyError               bad policy file, key or value (message names file and key)
    +- SettingsError             missing or invalid COLONIES_* / FAAS_SANDBOX_* variable
    +- ColoniesError             server unreachable or refused (pycolonies error kept as __cause__)
    |  +- ColoniesUnreachable    the request never reached the server (safe to retry)
    |  +- ColoniesRefused        the server answered with an error (never retry blindly)
    |  +- ReplyUnreadable        the server answered, but the reply is too large, deep or malformed
    +- SpecError                 a Colonies process spec we cannot serve (becomes a failed process)
    +- FunctionNotFound          no such (usable) function in ColonyFS /faas
    +- CodeUnavailable           ColonyFS or S3 unreachable and the code is not cached
    +- EngineError               the forker died or broke protocol (the call is failed as `crash`)
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base of every exception faas_sandbox raises on purpose."""


class PolicyError(SandboxError):
    """Raised when a policy file, key or value is invalid; the message names file and key."""


class SettingsError(SandboxError):
    """Raised when a required environment variable is missing or invalid."""


class ColoniesError(SandboxError):
    """Raised when a Colonies request fails; the pycolonies error is kept as __cause__."""


class ColoniesUnreachable(ColoniesError):
    """Raised when a request never reached the Colonies server (connection refused or reset)."""


class ColoniesRefused(ColoniesError):
    """Raised when the Colonies server answered a request with an error; .status is its HTTP
    code."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ReplyUnreadable(ColoniesError):
    """Raised when a Colonies reply exceeds our limits or is not JSON; ``.fields`` holds the
    top-level string fields salvaged from its raw bytes (e.g. ``processid``), maybe none."""

    def __init__(
        self, message: str, fields: dict[str, str] | None = None, raw: bytes = b""
    ) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})
        self.raw = raw  # the payload bytes (or the prefix read), for salvaging a listing


class SpecError(SandboxError):
    """Raised when a process spec is malformed; the process is failed with this message."""


class FunctionNotFound(SandboxError):
    """Raised when a function is not deployed in ColonyFS."""


class CodeUnavailable(SandboxError):
    """Raised when a function's code cannot be fetched now (ColonyFS/S3 down) and is not cached."""


class EngineError(SandboxError):
    """Raised when the sandbox forker died or broke protocol."""
