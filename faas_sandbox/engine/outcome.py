"""The result of one sandboxed call: a value, never an exception."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class ErrorKind(str, enum.Enum):
    """The fixed vocabulary of ways a call can fail."""

    COMPILE = "compile"  # syntax error, or source refused by the restricted compiler
    FORBIDDEN = "forbidden"  # a guard refused an attribute, import or builtin at run time
    TIMEOUT = "timeout"  # wall-clock limit
    CPU = "cpu"  # CPU-time limit (SIGXCPU)
    MEMORY = "memory"  # address-space limit (MemoryError)
    OUTPUT = "output"  # result not JSON-serialisable or over its cap; stdout flood
    RUNTIME = "runtime"  # the function raised; message carries type and text
    CRASH = "crash"  # the child died any other way

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call consumed, measured by the parent (wall clock) and wait4 (CPU, RSS)."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    max_rss_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 6),
            "cpu_s": round(self.cpu_s, 6),
            "max_rss_bytes": int(self.max_rss_bytes),
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended. ``ok`` calls carry ``value``; failed ones ``error_kind`` and ``message``."""

    ok: bool
    value: Any = None
    error_kind: ErrorKind | None = None
    message: str = ""
    stdout: str = ""
    usage: Usage = field(default_factory=Usage)

    @classmethod
    def failure(
        cls, kind: ErrorKind, message: str, stdout: str = "", usage: Usage | None = None
    ) -> Outcome:
        return cls(False, None, ErrorKind(kind), message, stdout, usage or Usage())

    @property
    def reason(self) -> str:
        """``"<kind>: <message>"``, the text a failed Colonies process carries."""
        return "" if self.ok else f"{self.error_kind}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The CLI contract: ``{ok, value, error: {kind, message} | null, stdout, usage}``."""
        error = None
        if not self.ok:
            error = {"kind": str(self.error_kind), "message": self.message}
        return {
            "ok": self.ok,
            "value": self.value,
            "error": error,
            "stdout": self.stdout,
            "usage": self.usage.to_json(),
        }
