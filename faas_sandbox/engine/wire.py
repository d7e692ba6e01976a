"""The engine's one wire format: typed, length-prefixed binary frames.

Every frame is ``u32 length`` (big-endian, of what follows) + ``u8 type`` + payload. Nothing
in a frame is JSON-decoded, unpickled or unmarshalled by the process that reads it; the
parent only slices bytes and decodes two bounded UTF-8 texts (stdout, message).

Caller -> child (one :data:`REQUEST` per child, written by the calling thread)::

    REQ_HEAD  kind u8 (SOURCE | CODE | PROBE), flags u8 (ELEMENT: send the result as its
              Colonies output element, faas_sandbox.element), modules u64 (bit mask over
              MODULE_ORDER), function u16, body u32, args u32 (byte lengths)
    LIMITS    every field of policy.Limits, in order: wall_seconds f64, the rest u64
    then      function (UTF-8), body (source UTF-8 | marshalled code | nothing), args (the
              caller's JSON ``[args, kwargs]``, untouched)

Child -> caller, at most two frames: :data:`CODE` (the marshalled code object, written after
compiling and *before* any user code runs, so it can be cached) or :data:`NOCODE` (compiled,
but too big to cache), then one :data:`RESULT`::

    RES_HEAD  kind u8 (index in RESULT_KINDS; 0 = ok), flags u8 (COMPILE_LIMIT: a compile ran
              out of memory), cpu_s f64, max_rss_bytes u64 (the child's own getrusage),
              value u32, stdout u32, message u32 (byte lengths)
    then      value (JSON, or with ELEMENT the output element's JSON; encoded once in the
              child), stdout (UTF-8), message (UTF-8)

The forker <-> parent control messages are in :mod:`faas_sandbox.engine.control`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, fields

from ..errors import EngineError
from ..kinds import OK, ErrorKind
from ..policy import Limits
from .modules import MODULE_NAMES

FRAME = struct.Struct(">IB")  # length of (type + payload), type
REQUEST, CODE, NOCODE, RESULT = 1, 2, 3, 4
SOURCE, CODE_BODY, PROBE = 1, 2, 3  # request kinds
REQ_HEAD = struct.Struct(">BBQHII")
ELEMENT = 1  # request flag
LIMITS = struct.Struct(">d" + "Q" * (len(fields(Limits)) - 1))
RES_HEAD = struct.Struct(">BBdQIII")
RESULT_KINDS = (
    OK,
    ErrorKind.COMPILE,
    ErrorKind.FORBIDDEN,
    ErrorKind.MEMORY,
    ErrorKind.OUTPUT,
    ErrorKind.RUNTIME,
)
COMPILE_LIMIT = 1
MODULE_ORDER = tuple(sorted(MODULE_NAMES))
MAX_CODE_BYTES = 8 << 20  # largest marshalled code object a child sends for the cache
MAX_FUNCTION_BYTES = 1024
assert fields(Limits)[0].name == "wall_seconds" and len(MODULE_ORDER) <= 64
_LIMIT_NAMES = tuple(f.name for f in fields(Limits))
_READ_CHUNK = 1 << 16


class WireError(EngineError):
    """A frame that is truncated, oversize or not what its type says."""


def frame(kind: int, payload: bytes) -> bytes:
    return FRAME.pack(len(payload) + 1, kind) + payload


def pack_limits(limits: Limits) -> bytes:
    return LIMITS.pack(*(getattr(limits, name) for name in _LIMIT_NAMES))


def module_mask(modules: frozenset[str]) -> int:
    return sum(1 << i for i, name in enumerate(MODULE_ORDER) if name in modules)


def mask_modules(mask: int) -> frozenset[str]:
    return frozenset(name for i, name in enumerate(MODULE_ORDER) if mask >> i & 1)


def encode_request(
    kind: int,
    function: bytes,
    modules: int,
    limits: bytes,
    body: bytes,
    args: bytes,
    element: bool = False,
) -> bytes:
    """One REQUEST frame; ``limits`` is :func:`pack_limits` output (cached by the caller)."""
    head = REQ_HEAD.pack(
        kind, ELEMENT if element else 0, modules, len(function), len(body), len(args)
    )
    return frame(REQUEST, b"".join((head, limits, function, body, args)))


@dataclass(frozen=True, slots=True)
class Request:
    kind: int
    function: str
    modules: frozenset[str]
    limits: Limits
    body: bytes
    args: bytes
    element: bool = False  # the result as its Colonies output element

    @property
    def size(self) -> int:
        """Bytes this request occupies in the child (plus a page of slack)."""
        return len(self.function) * 4 + len(self.body) + len(self.args) + 4096


def decode_request_head(data: bytes) -> tuple[int, int, int, int, int, Limits, int]:
    """``(kind, modules, function_len, body_len, args_len, limits, flags)``, lengths checked
    against the limits they travel with."""
    size, ftype = FRAME.unpack_from(data)
    kind, flags, mask, flen, blen, alen = REQ_HEAD.unpack_from(data, FRAME.size)
    limits = Limits(**dict(zip(_LIMIT_NAMES, LIMITS.unpack_from(data, FRAME.size + REQ_HEAD.size))))
    body_cap = {SOURCE: limits.max_source_bytes, CODE_BODY: MAX_CODE_BYTES, PROBE: 0}.get(kind)
    if (
        ftype != REQUEST
        or body_cap is None
        or blen > body_cap
        or flen > MAX_FUNCTION_BYTES
        or flags & ~ELEMENT
        or alen > limits.max_args_bytes
        or size != 1 + REQ_HEAD.size + LIMITS.size + flen + blen + alen
    ):
        raise WireError("malformed request")
    return kind, mask, flen, blen, alen, limits, flags


REQUEST_HEAD_BYTES = FRAME.size + REQ_HEAD.size + LIMITS.size


def read_request(fd: int) -> Request | None:
    """Block until one request is read; None on EOF before it (the spare was retired)."""
    head = read_exact(fd, REQUEST_HEAD_BYTES)
    if head is None:
        return None
    kind, mask, flen, blen, alen, limits, flags = decode_request_head(head)
    rest = read_exact(fd, flen + blen + alen) if flen + blen + alen else b""
    if rest is None:
        raise WireError("request ended early")
    function = rest[:flen].decode("utf-8", "surrogatepass")
    return Request(
        kind,
        function,
        mask_modules(mask),
        limits,
        rest[flen : flen + blen],
        rest[flen + blen :],
        bool(flags & ELEMENT),
    )


def encode_result(
    kind: int, flags: int, cpu_s: float, max_rss: int, value: bytes, stdout: bytes, message: bytes
) -> bytes:
    head = RES_HEAD.pack(kind, flags, cpu_s, max_rss, len(value), len(stdout), len(message))
    return frame(RESULT, b"".join((head, value, stdout, message)))


@dataclass(frozen=True, slots=True)
class Result:
    """A child's verdict as the parent reads it; ``value`` stays JSON bytes."""

    kind: str
    flags: int
    cpu_s: float
    max_rss_bytes: int
    value: bytes
    stdout: str
    message: str


def decode_result(payload: bytes) -> Result:
    """The payload of a RESULT frame (type byte stripped); WireError when malformed."""
    if len(payload) < RES_HEAD.size:
        raise WireError("result frame too short")
    kind, flags, cpu, rss, vlen, slen, mlen = RES_HEAD.unpack_from(payload)
    end = RES_HEAD.size + vlen + slen + mlen
    if kind >= len(RESULT_KINDS) or end != len(payload) or not 0 <= cpu < 1e9:
        raise WireError("result frame does not add up")
    if (kind == 0) != (vlen > 0):
        raise WireError("result frame: a value iff ok")
    at = RES_HEAD.size
    value = payload[at : at + vlen]
    stdout = payload[at + vlen : at + vlen + slen].decode("utf-8", "replace")
    message = payload[at + vlen + slen : end].decode("utf-8", "replace")
    return Result(RESULT_KINDS[kind], flags, cpu, rss, value, stdout, message)


def result_cap(max_result_bytes: int, max_stdout_bytes: int) -> int:
    """Largest RESULT frame a well-behaved child sends (message <= 2,000 chars of UTF-8)."""
    return FRAME.size + RES_HEAD.size + max_result_bytes + max_stdout_bytes + 4 * 2000 + 64


def write_all(fd: int, data: bytes) -> None:
    """Write every byte to a blocking fd (pipes may accept less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_exact(fd: int, size: int) -> bytes | None:
    """``size`` bytes from a blocking fd; None on EOF before the first byte."""
    parts: list[bytes] = []
    remaining = size
    while remaining:
        chunk = os.read(fd, min(remaining, _READ_CHUNK))
        if not chunk:
            if remaining == size:
                return None
            raise WireError("stream ended inside a frame")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)
