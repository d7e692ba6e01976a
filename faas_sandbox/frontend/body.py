"""Request bodies, bounded and strict, plus the X-Request-Id on every answer.

:class:`FrontDoor` is a pure ASGI middleware in front of everything: a request whose
Content-Length is over the cap is answered 413 before one byte of its body is read (the
connection is then closed), so a flood of oversized bodies costs no memory. Bodies without a
Content-Length (chunked) are counted as :func:`read_json` reads them and refused once over.

:func:`read_json` accepts ``application/json`` only (else 415), UTF-8 only, and JSON as the
standard defines it: ``NaN``, ``Infinity`` and numbers that overflow a float (``1e309``) are
400, as are documents nested too deep to parse.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..kinds import ErrorKind
from .problems import ApiError

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON_TYPES = ("application/json",)


class FrontDoor:
    """Body cap by Content-Length, and X-Request-Id (echoed when sane, else generated)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        raw_id = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", raw_id)]
            await send(message)

        length = headers.get(b"content-length")
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                size = -1
            if size < 0:
                await _answer(send_with_id, 400, ErrorKind.SPEC, "Content-Length is not a number")
                return
            if size > self.max_body_bytes:
                await _answer(
                    send_with_id,
                    413,
                    ErrorKind.TOO_LARGE,
                    f"request body of {size} bytes is over the {self.max_body_bytes}-byte limit",
                )
                return
        await self.app(scope, receive, send_with_id)


async def _answer(send: Send, status: int, kind: str, message: str) -> None:
    body = json.dumps({"detail": {"kind": kind, "message": message}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def loads_strict(data: bytes) -> Any:
    """JSON per RFC 8259 (no NaN/Infinity, no overflowing floats); ApiError 400 otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(
            ErrorKind.SPEC, f"request body is not UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ApiError(ErrorKind.SPEC, "request body is nested too deeply") from None
    except ValueError as exc:
        raise ApiError(
            ErrorKind.SPEC, f"request body is not valid JSON: {str(exc)[:200]}"
        ) from None


async def read_json(request: Request, max_bytes: int) -> Any:
    """The JSON body, or None when there is none. 413 / 415 / 400 as the module says."""
    has_body = (
        request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media not in _JSON_TYPES:
        raise ApiError(
            ErrorKind.MEDIA_TYPE,
            f"expected Content-Type application/json, got {media[:80] or 'none'}",
        )
    if not has_body:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(
                ErrorKind.TOO_LARGE,
                f"request body is over the {max_bytes}-byte limit",
                headers={"Connection": "close"},
            )
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        return None
    return loads_strict(data)
