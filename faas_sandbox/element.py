"""The one place that knows how a result becomes a Colonies output element (docs/protocol.md,
Results), and how a reader turns the element back into the value. Standard library only: the
sandbox child writes elements, the executor sends them, callers (front end, CLI) read them.

pycolonies' ``Process`` model takes only strings and numbers in ``out``, so a result travels as
one element: ints within +-2**53 and finite floats as the number; a plain string as itself;
everything else (bool, None, lists, dicts, bigger ints) and strings that are themselves JSON
text as a JSON string holding the value's JSON text. A plain string holding a lone surrogate
cannot be sent unchanged (the server turns it into U+FFFD) and is refused; inside JSON text a
lone surrogate travels as a ``\\udXXX`` escape.

- :func:`from_json` runs in the sandbox child, under the call's limits (engine/run.py's encode_value
  calls it with the value's JSON text, already encoded once): it returns the element's JSON text.
- :func:`well_formed` is the caller's bounded shape check of the child's bytes (one JSON number
  or one JSON string, nothing around it), so the element can be spliced into a message to the
  server without being decoded there.
- :func:`read` is the reading rule (the HTTP front end, ``faas-sandbox call``).
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_SAFE_INT = 2**53
MAX_NUMBER_BYTES = 32  # the longest float repr is 24; raw ints have at most 16 digits
SURROGATE = re.compile("[\ud800-\udfff]")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# Checking a string element never makes a match object per escape: one regex over the whole
# string with an alternation per escape took ~70-100 ms per forged MiB of the *caller's* CPU
# (a tenant's child chooses these bytes); this check takes 0.5-17 ms.
_CONTROL_BYTES = bytes(range(0x20))
_BAD_ESCAPE = re.compile(rb'\\(?:[^"/bfnrtu]|u(?![0-9a-fA-F]{4})|\Z)')


class Element(bytes):
    """One output element's JSON bytes, made in the child and checked by :func:`well_formed`:
    sent to the server as they are (``faas_sandbox.colonies.client`` splices them into the
    message)."""


class Unsendable(ValueError):
    """The result has no element (kind ``output``); the message says why."""


def escape_surrogates(text: str) -> str:
    """JSON text with each lone surrogate (only ever inside a string) as a ``\\udXXX`` escape."""
    return SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def from_json(text: str) -> str:
    """The element's JSON text for a value whose compact JSON text is ``text``.

    ``text`` is what ``json.dumps(value, ensure_ascii=False, allow_nan=False)`` produced. The
    form is chosen from the text alone (never from the value's type, which a result can fake
    with ``__class__``), so no user code runs here.
    """
    first = text[:1]
    if first == '"':
        plain = json.loads(text)  # our own encoder's output: a str
        if is_json_text(plain):
            return _quoted(escape_surrogates(text))
        if SURROGATE.search(plain):
            raise Unsendable(
                "result is a string holding a lone surrogate (not valid Unicode "
                "text), which cannot be delivered unchanged"
            )
        return text
    if first and first in "-0123456789":
        if any(c in text for c in ".eE"):
            return text  # a float, finite: allow_nan=False refused the others
        return text if -MAX_SAFE_INT <= int(text) <= MAX_SAFE_INT else _quoted(text)
    return _quoted(escape_surrogates(text))  # true, false, null, arrays, objects


def _quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def is_json_text(text: str) -> bool:
    """Whether a string parses as JSON (``NaN``/``Infinity`` count); nesting too deep to parse
    here counts as JSON too, so it is quoted and a reader never has to parse it."""
    try:
        _loads_text(text)
    except RecursionError:
        return True
    except ValueError:
        return False
    return True


def _loads_text(text: str) -> Any:
    return json.loads(text, parse_constant=lambda name: name)


def of_value(value: Any) -> Element:
    """The element of a value already in this process (trusted: built by our own code or a
    test), by the same rule the child applies to results."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return Element(escape_surrogates(from_json(text)).encode("utf-8"))


def well_formed(data: bytes) -> bool:
    """One JSON number or one JSON string, nothing else: what :func:`from_json` makes.
    Linear in ``len(data)`` at C speed (a few ms per MiB): the caller runs it on bytes a
    tenant's child chose."""
    if len(data) <= MAX_NUMBER_BYTES and _NUMBER.fullmatch(data):
        return True
    return _json_string(data)


def _json_string(data: bytes) -> bool:
    """``"..."`` with no control byte inside, every backslash starting a valid escape and
    every quote inside escaped. Escaped backslashes are dropped first, pairing them from
    the left as a JSON reader does; then every backslash left starts an escape of its own,
    which one search (no match object per escape) and two counts can check."""
    if len(data) < 2 or data[:1] != b'"' or data[-1:] != b'"':
        return False
    inner = data[1:-1]
    if len(inner.translate(None, _CONTROL_BYTES)) != len(inner):
        return False
    rest = inner.replace(b"\\\\", b"")
    if _BAD_ESCAPE.search(rest):
        return False  # a backslash before anything else, or last
    return rest.count(b'"') == rest.count(b'\\"')  # else a quote ends the string early


def read(item: Any) -> Any:
    """The reading rule: a string that parses as JSON is that JSON, else the item itself.
    Non-finite floats (``"NaN"``, ``"Infinity"``) stay text, since JSON cannot carry them."""
    if not isinstance(item, str):
        return item
    try:
        return _loads_text(item)
    except (ValueError, RecursionError):
        return item
