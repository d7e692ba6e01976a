"""One error body for every answer that is not 2xx: ``{"detail": {"kind", "message", ...}}``.

Request errors (our checks, FastAPI's validation, unknown routes and methods) and call
failures all leave through :func:`problem`, so a client parses one shape. Status by kind:

    400 spec            the request is malformed (bad JSON, unknown field, bad id, ...)
    401 unauthorized    no or unknown bearer token            (WWW-Authenticate: Bearer)
    403 denied          the token may not call this function
    404 not_found       no such function, process or route
    405 method          method not allowed on this path        (Allow)
    413 too_large       body over the front end's cap
    415 media_type      body is not application/json
    422 <sandbox kind>  the function failed: compile, forbidden, runtime, memory, ...
    429 busy            too many calls in flight, executors saturated, or token over its
                        rate (Retry-After)
    502 unreachable     the Colonies server cannot be reached
        refused         it refused us, or answered what we cannot read (:func:`from_colonies`)
    503 no_executor     no executor of the type is alive; unavailable: code store down
                        (Retry-After)
    504 timeout         no result within the call's limits
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..colonies.faults import fault
from ..errors import ColoniesError, ColoniesRefused
from ..kinds import OK, ErrorKind
from .models import ErrorResponse

log = logging.getLogger(__name__)

STATUS: dict[str, int] = {
    OK: 200,
    ErrorKind.SPEC: 400,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.DENIED: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.METHOD: 405,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.MEDIA_TYPE: 415,
    ErrorKind.BUSY: 429,
    ErrorKind.UNREACHABLE: 502,
    ErrorKind.REFUSED: 502,
    ErrorKind.NO_EXECUTOR: 503,
    ErrorKind.UNAVAILABLE: 503,  # the executor could not fetch the code (ColonyFS/S3 down)
    ErrorKind.TIMEOUT: 504,
}
FUNCTION_FAILED = 422  # every other kind: the sandbox's compile, forbidden, runtime, ...
DESCRIPTIONS = {  # what each status means, in the OpenAPI schema
    400: "malformed request (kind spec)",
    401: "missing or unknown bearer token",
    403: "token not allowed for this function (kind denied)",
    404: "no such function, process or route",
    413: "request body over the limit",
    415: "body is not application/json",
    422: "the function failed: kind compile, forbidden, runtime, memory, cpu, output, crash, ...",
    429: "too many calls in flight, executors saturated, or token over its rate (Retry-After)",
    502: "Colonies server unreachable or refusing",
    503: "no executor of the type is alive, or the code store is down (Retry-After)",
    504: "no result within the call's limits",
}


class ApiError(Exception):
    """Raised inside a route to answer with :func:`problem`."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message
        self.status = status or status_for(kind)
        self.headers = headers or {}
        self.extra = extra


def status_for(kind: str) -> int:
    return STATUS.get(kind, FUNCTION_FAILED)


def from_colonies(
    exc: ColoniesError,
    doing: str,
    *,
    missing: ApiError | None = None,
    status: int | None = None,
) -> ApiError:
    """The one answer to a failed Colonies request, on every route: the kind is
    :func:`~faas_sandbox.colonies.faults.fault`'s (``unreachable`` or ``refused``, 502).

    ``missing``: the answer when the request named something the server may not know (a
    process id) and it refused: it does not know it, or it is not ours to read. ``status``:
    another status for the same kinds (``/healthz`` answers 503)."""
    if missing is not None and isinstance(exc, ColoniesRefused):
        return missing
    kind, message = fault(exc, doing)
    return ApiError(kind, message, status=status)


def documented(*codes: int) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: each status with the one error body and its description."""
    return {c: {"model": ErrorResponse, "description": DESCRIPTIONS[c]} for c in codes}


def problem(
    kind: str,
    message: str,
    *,
    status: int | None = None,
    headers: dict[str, str] | None = None,
    retry_after: int = 5,
    **extra: Any,
) -> JSONResponse:
    """The error answer. 429/503 carry Retry-After; extra keys (processid, ...) join detail."""
    status = status or status_for(kind)
    headers = dict(headers or {})
    if status == 429:
        headers.setdefault("Retry-After", "1")
    elif status == 503:
        headers.setdefault("Retry-After", str(retry_after))
    elif status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    detail: dict[str, Any] = {"kind": kind, "message": message}
    detail.update({k: v for k, v in extra.items() if v is not None})
    if "processid" in detail:
        headers.setdefault("X-Process-Id", str(detail["processid"]))
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(
            f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))
        )
    return "; ".join(parts)[:500] or "invalid request"


def install(app: FastAPI, retry_after: int) -> None:
    """Route FastAPI's own errors (validation, 404 route, 405 method) into the one shape."""

    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return problem(
            exc.kind,
            exc.message,
            status=exc.status,
            headers=exc.headers,
            retry_after=retry_after,
            **exc.extra,
        )

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem(ErrorKind.SPEC, _validation_message(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            return problem(ErrorKind.NOT_FOUND, f"no route {request.url.path[:200]}")
        if exc.status_code == 405:
            return problem(
                ErrorKind.METHOD,
                f"method {request.method} not allowed here",
                status=405,
                headers=headers,
            )
        return problem(
            ErrorKind.SPEC, str(exc.detail)[:300], status=exc.status_code, headers=headers
        )

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
