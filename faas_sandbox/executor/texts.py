"""User-controlled text made safe for where it goes: the Colonies server, and our own log.

Colonies v1.9.12 stores errors and log messages in PostgreSQL ``text`` columns, which refuse
NUL: a ``closefailedmsg`` whose errors hold one is refused *after* the state is set, leaving a
failed process with no reason; and the server turns a lone surrogate into U+FFFD. So
:func:`for_server` escapes exactly those, visibly (``\\x00``, ``\\ud800``), and keeps
everything else (newlines in printed output included).

Our own log lines must not be forgeable by a function's output or exception text:
:func:`for_log` escapes every control character (newlines, ANSI escapes, C1 controls), the
Unicode line and paragraph separators and lone surrogates, the same visible way.
"""

from __future__ import annotations

import re

_SERVER_BAD = re.compile("[\x00\ud800-\udfff]")
_LOG_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_server(text: str) -> str:
    """``text`` that the server stores as it is: NUL and lone surrogates escaped."""
    return _SERVER_BAD.sub(_escape, text)


def for_log(text: object, limit: int = 500) -> str:
    """One log-line-safe rendering of untrusted text, at most ``limit`` characters."""
    value = text if isinstance(text, str) else str(text)
    if len(value) > limit:
        value = value[:limit] + "..."
    return _LOG_BAD.sub(_escape, value)


def has_surrogate(value: object, max_nodes: int = 100_000) -> bool:
    """Whether any string in a (JSON-shaped) value holds a lone surrogate; iterative."""
    stack, seen = [value], 0
    while stack and seen < max_nodes:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")
