"""The result of one sandboxed call: a value, never an exception."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..element import Element, of_value, read
from ..kinds import ErrorKind

__all__ = ["ErrorKind", "Outcome", "Usage"]


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


_UNSET: Any = object()


class Outcome:
    """How a call ended. ``ok`` calls carry ``value``; failed ones ``error_kind`` and ``message``.

    A value that came from a child is kept as the JSON bytes the child encoded
    (``value_json``), or, for a call that asked for it, as its Colonies output element
    (``element``, :mod:`.element`), and decoded only if someone reads ``value``: the engine
    itself never decodes what a function returned. Immutable.
    """

    __slots__ = ("ok", "error_kind", "message", "stdout", "usage", "_value", "_json", "_element")

    ok: bool
    error_kind: ErrorKind | None
    message: str
    stdout: str
    usage: Usage
    _value: Any
    _json: bytes | None
    _element: Element | None

    def __init__(
        self,
        ok: bool,
        value: Any = _UNSET,
        error_kind: ErrorKind | None = None,
        message: str = "",
        stdout: str = "",
        usage: Usage | None = None,
        *,
        value_json: bytes | None = None,
        element: bytes | None = None,
    ) -> None:
        if value is _UNSET and value_json is None and element is None:
            value = None
        if element is not None and not isinstance(element, Element):
            element = Element(element)
        for name, item in (
            ("ok", ok),
            ("error_kind", error_kind),
            ("message", message),
            ("stdout", stdout),
            ("usage", usage or Usage()),
            ("_value", value),
            ("_json", value_json),
            ("_element", element),
        ):
            object.__setattr__(self, name, item)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Outcome is immutable")

    @property
    def value(self) -> Any:
        """The return value (decoded from ``value_json`` or ``element`` on first use)."""
        if self._value is _UNSET:
            data = self._json if self._json is not None else self._element
            value = json.loads(data or b"null")
            object.__setattr__(self, "_value", value if self._json is not None else read(value))
        return self._value

    @property
    def value_json(self) -> bytes:
        """The return value as compact UTF-8 JSON (what the child sent, untouched)."""
        data = self._json
        if data is None:
            data = json.dumps(
                self.value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
            ).encode("utf-8", "surrogatepass")
            object.__setattr__(self, "_json", data)
        return data

    @property
    def element(self) -> Element:
        """The return value as one Colonies output element (docs/protocol.md, Results): the
        child's bytes, untouched, when the call asked for them; else made from ``value``
        here (a trusted value). ValueError for a failed call."""
        if not self.ok:
            raise ValueError("a failed call has no result element")
        data = self._element
        if data is None:
            data = of_value(self.value)
            object.__setattr__(self, "_element", data)
        return data

    def _key(self) -> tuple[Any, ...]:
        return (self.ok, self.value, self.error_kind, self.message, self.stdout, self.usage)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Outcome):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        value = self._value if self._value is not _UNSET else self._json or self._element
        return (
            f"Outcome(ok={self.ok!r}, value={value!r}, error_kind={self.error_kind!r}, "
            f"message={self.message!r}, stdout={self.stdout!r}, usage={self.usage!r})"
        )

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
