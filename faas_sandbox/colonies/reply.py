"""Bounded reading of Colonies replies: raw bytes in, a value or a typed error out.

Everything a reply carries is hostile: a process's spec is whatever some colony member
submitted, and the server pretty-prints it (a 4 KB submit nested 2,000 deep becomes an 8 MB
assign reply). So nothing here trusts a size, a depth or a shape:

- :func:`read_capped` reads a body chunk by chunk and stops at a byte cap (keeping the prefix);
- :func:`loads` checks size, nesting depth and node count on the raw bytes, iteratively
  (strings removed by one regex, everything but brackets and commas deleted by one
  ``bytes.translate``), and only then calls ``json.loads``: no ``RecursionError`` can happen
  and no huge structure is ever built;
- :func:`decode_reply` opens the envelope (``{"payloadtype", "payload", "error"}``) and returns
  the payload value, or raises :class:`~faas_sandbox.errors.ColoniesRefused` for a server
  error, or :class:`~faas_sandbox.errors.ReplyUnreadable` carrying whatever top-level string
  fields could be salvaged from the raw payload (:func:`salvage`), so a caller can still act
  on a process id when the rest of the process is unreadable;
- :func:`split_array` cuts a (possibly truncated) JSON array into its elements' raw bytes, so
  one unreadable process in a listing spoils only itself.

The transport (colonies.py) only hands bytes to this module; this module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable

MAX_REPLY_BYTES = 16 * 1024 * 1024  # whole HTTP body (base64 envelope)
MAX_DEPTH = 64  # nesting of the payload JSON: a process is ~5 deep, the rest is spec.args
MAX_NODES = 200_000  # brackets + commas: bounds what json.loads may build (memory)
SALVAGE_BYTES = 64 * 1024  # of a payload searched for top-level fields when unreadable

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}:,]')
_STRUCTURE = b"[]{},"
_ESCAPED_SPACE = (b"\\ ", b"\\\t", b"\\\r", b"\\\n")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)
_PAYLOADTYPE = re.compile(rb'^\s*\{\s*"payloadtype"\s*:\s*"([a-z]{1,64})"')
_PAYLOAD = re.compile(rb'"payload"\s*:\s*"([A-Za-z0-9+/=]*)')


def read_capped(chunks: Iterable[bytes], cap: int = MAX_REPLY_BYTES) -> tuple[bytes, bool]:
    """(body, truncated): at most ``cap`` bytes of ``chunks``; stops reading past the cap."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        if size + len(chunk) > cap:
            parts.append(chunk[: cap - size])
            return b"".join(parts), True
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts), False


class DecodeError(ValueError):
    """Raised when bytes are not JSON within the limits; the message says which limit."""


def check_shape(data: bytes, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Raise DecodeError when ``data`` nests deeper than ``max_depth`` or has too many nodes.

    Iterative and linear: strings are dropped (their brackets do not count), then only
    ``[]{},`` are kept. Unbalanced input is left for the JSON parser to refuse."""
    opens = data.count(b"[") + data.count(b"{")
    if opens <= max_depth and 2 * opens + data.count(b",") <= max_nodes:
        return  # cannot nest deeper or have more values than allowed
    if b"\\" not in data or not any(escaped in data for escaped in _ESCAPED_SPACE):
        # Whitespace outside strings is padding (the server pretty-prints: most of a deep
        # reply is indentation) and inside strings irrelevant to the shape, unless it follows
        # a backslash (then removing it would change what is escaped): drop it first, in C.
        data = data.translate(None, b" \t\r\n")
    structure = _STRING.sub(b"", data).translate(None, _NOT_STRUCTURE)
    if len(structure) > max_nodes:
        raise DecodeError(f"not valid JSON within limits: more than {max_nodes} values")
    depth = 0
    for byte in structure:
        if byte in (91, 123):  # [ {
            depth += 1
            if depth > max_depth:
                raise DecodeError(
                    f"not valid JSON within limits: nested deeper than {max_depth} levels"
                )
        elif byte in (93, 125):  # ] }
            depth -= 1


def loads(
    data: bytes | str,
    *,
    max_bytes: int = MAX_REPLY_BYTES,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """``json.loads`` after the size, depth and node checks; DecodeError says what is wrong."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise DecodeError(
            f"not valid JSON within limits: {len(raw)} bytes, over the limit of {max_bytes}"
        )
    check_shape(raw, max_depth=max_depth, max_nodes=max_nodes)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # RecursionError: cannot happen after the check
        raise DecodeError(f"not valid JSON: {str(exc)[:120]}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _tokens(data: bytes) -> Iterator[bytes]:
    for match in _TOKEN.finditer(data):
        yield match.group()


def salvage(
    data: bytes, names: Iterable[str] = ("processid",), limit: int = SALVAGE_BYTES
) -> dict[str, str]:
    """Top-level string fields ``names`` of a JSON object, read from (a prefix of) raw bytes.

    Works on input too deep, too large or cut short, since it never builds the value; fields
    after the first ``limit`` bytes are not looked for."""
    wanted = set(names)
    found: dict[str, str] = {}
    depth, key, expect_value = 0, None, False
    for token in _tokens(data[:limit]):
        if token in (b"{", b"["):
            depth += 1
            key, expect_value = None, False
        elif token in (b"}", b"]"):
            depth -= 1
            if depth <= 0:
                break
        elif token == b":":
            expect_value = depth == 1 and key is not None
        elif token == b",":
            key, expect_value = None, False
        elif depth == 1:
            if expect_value:
                if isinstance(key, str) and key in wanted:
                    try:
                        value = json.loads(token)
                    except ValueError:
                        value = None
                    if isinstance(value, str):
                        found[key] = value
                        if len(found) == len(wanted):
                            break
                key, expect_value = None, False
            else:
                try:
                    key = json.loads(token)
                except ValueError:
                    key = None
    return found


def split_array(data: bytes) -> list[bytes]:
    """The raw bytes of each top-level element of a JSON array (the last may be cut short)."""
    elements: list[bytes] = []
    depth, start = 0, -1
    for match in _TOKEN.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth == 2 and start < 0:
                start = match.start()
        elif token in (b"]", b"}"):
            depth -= 1
            if depth == 1 and start >= 0:
                elements.append(data[start : match.end()])
                start = -1
            elif depth <= 0:
                break
    if start >= 0:
        elements.append(data[start:])
    return elements


def payload_bytes(text: str | bytes, partial: bool = False) -> bytes:
    """Standard base64 (the envelope's payload) to bytes; with ``partial``, a cut-short tail
    is ignored."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else text
    except UnicodeEncodeError:
        raise DecodeError("payload is not base64") from None
    if partial:
        raw = raw[: len(raw) // 4 * 4]
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("payload is not base64") from None


def decode_reply(
    body: bytes,
    status: int,
    truncated: bool = False,
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
) -> Any:
    """The payload value of one Colonies reply body (see the module docstring for errors)."""
    if truncated:
        kind = _PAYLOADTYPE.match(body)
        match = _PAYLOAD.search(body)
        prefix = b""
        if match is not None:
            try:
                prefix = payload_bytes(match.group(1), partial=True)
            except DecodeError:
                prefix = b""
        name = kind.group(1).decode() if kind else "?"
        raise ReplyUnreadable(f"{name} reply over {len(body)} bytes", salvage(prefix), prefix)
    try:
        envelope = loads(body, max_depth=2, max_nodes=16)
        if not isinstance(envelope, dict):
            raise DecodeError("envelope is not an object")
        payload_text, error = envelope["payload"], envelope["error"]
        if not isinstance(payload_text, str):
            raise DecodeError("payload is not text")
        raw = payload_bytes(payload_text)
    except (DecodeError, KeyError) as exc:
        text = f"HTTP {status}: not a Colonies reply ({_gist(exc)})"
        if status >= 500:  # a proxy or a server that is going away
            raise ColoniesUnreachable(text) from None
        raise ColoniesRefused(text, status) from None
    if error:
        return _error(raw, status)
    try:
        return loads(raw, max_depth=max_depth, max_nodes=max_nodes)
    except DecodeError as exc:
        raise ReplyUnreadable(str(exc), salvage(raw), raw) from None


@dataclass(frozen=True, slots=True)
class Unreadable:
    """One element of a listing that could not be read; ``fields`` as salvaged."""

    reason: str
    fields: dict[str, str]


def salvage_list(exc: ReplyUnreadable) -> list[Any]:
    """The elements of an unreadable JSON array reply: each decoded if it can be, else an
    :class:`Unreadable` (the last element of a cut-short reply is one too)."""
    out: list[Any] = []
    for element in split_array(exc.raw):
        try:
            out.append(loads(element))
        except DecodeError as error:
            out.append(Unreadable(str(error), salvage(element)))
    return out


# The server passes its database driver's error text through as the reply, with 400, 403 or
# 500 (e.g. 403 "dial tcp 127.0.0.1:55432: connect: connection refused" from the membership
# check of every request while PostgreSQL restarts; "dial unix ...: no such file or directory"
# when it reaches PostgreSQL through its unix socket, as the dev stack's namespaced server
# does). Those say nothing about the request: they are "unreachable" (retry later), never a
# decision such as "removed" or "already closed".
# NO_QUORUM: a cluster node that cannot reach a majority of its etcd peers answers assigns with
# it (v1.9.12, HTTP 500); the client then moves to another node (colonies.py).
NO_QUORUM = "context deadline exceeded"
_BACKEND_DOWN = (
    "dial tcp ",
    "dial unix ",
    "connect: connection refused",
    "connection reset by peer",
    "driver: bad connection",
    "sql: database is closed",
    "broken pipe",
    "pq: the database system is",
    "pq: terminating connection",
    "pq: sorry, too many clients",
    "server closed the connection unexpectedly",
    "i/o timeout",
    "unexpected EOF",
    NO_QUORUM,
)


def backend_down(message: str) -> bool:
    """True when a Colonies error message is its database failing, not a refusal."""
    return message.strip() == "EOF" or any(text in message for text in _BACKEND_DOWN)


def _error(raw: bytes, status: int) -> Any:
    """Raise ColoniesRefused (or ColoniesUnreachable: the server's database failing)."""
    try:
        payload = loads(raw, max_bytes=64 * 1024, max_depth=4, max_nodes=64)
    except DecodeError as exc:
        raise ColoniesRefused(f"HTTP {status}: unreadable error ({exc})", status) from None
    message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
    code = payload.get("status", status) if isinstance(payload, dict) else 0
    if backend_down(str(message)):
        what = "its etcd quorum" if NO_QUORUM in str(message) else "its database"
        raise ColoniesUnreachable(f"colonies server cannot reach {what}: {message}")
    raise ColoniesRefused(str(message), code if isinstance(code, int) else 0)


def _gist(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."
