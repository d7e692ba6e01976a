"""Length-prefixed JSON frames: the only format that crosses a process boundary in the engine.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Every read
has a byte cap, decoding is strict (no NaN/Infinity, valid UTF-8, bounded nesting) and nothing
is ever unpickled. The same frames run parent <-> forker (stdin/stdout of the forker) and
forker <-> child (one request pipe and one result pipe per child).

:class:`FrameBuffer` is the incremental decoder for non-blocking readers (the forker's poll
loop, the parent's reader thread); :func:`read_frame` is the blocking one (a child waiting for
its request).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from ..errors import EngineError

HEADER = struct.Struct(">I")
# Largest frame between our own processes (parent <-> forker, forker -> child request).
MAX_CONTROL_FRAME = 256 * 1024 * 1024
_READ_CHUNK = 1 << 16


class WireError(EngineError):
    """Raised when a frame is oversize, truncated, not UTF-8 or not strict JSON."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


def dumps(obj: Any) -> bytes:
    """Strict, compact UTF-8 JSON; lone surrogates fall back to ``\\u`` escapes."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("ascii")


def loads(body: bytes) -> Any:
    """Decode one frame body; any defect is a :class:`WireError`."""
    try:
        return _decoder.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise WireError(f"bad frame: {type(exc).__name__}: {str(exc)[:200]}") from None


def pack(body: bytes) -> bytes:
    """Prefix an already-encoded JSON body with its length."""
    return HEADER.pack(len(body)) + body


def encode(obj: Any) -> bytes:
    """One complete frame (header and body) for ``obj``."""
    return pack(dumps(obj))


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking fd (pipes may accept less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_frame(fd: int, obj: Any) -> None:
    write_all(fd, encode(obj))


def _read_exact(fd: int, size: int) -> bytes | None:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, _READ_CHUNK))
        if not chunk:
            return None
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def read_frame(fd: int, max_bytes: int) -> Any:
    """Block until one frame is read; ``None`` on a clean EOF before the header."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    if size > max_bytes:
        raise WireError(f"frame of {size} bytes is over the cap of {max_bytes}")
    body = _read_exact(fd, size)
    if body is None:
        raise WireError("stream ended inside a frame")
    return loads(body)


class FrameBuffer:
    """Bytes in, complete frame bodies out; refuses any frame over ``max_bytes``."""

    __slots__ = ("_buf", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes]:
        """Append ``data``; return the bodies of every frame now complete."""
        self._buf += data
        bodies: list[bytes] = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > self.max_bytes:
                raise WireError(f"frame of {size} bytes is over the cap of {self.max_bytes}")
            end = HEADER.size + size
            if len(self._buf) < end:
                break
            bodies.append(bytes(self._buf[HEADER.size:end]))
            del self._buf[:end]
        return bodies
