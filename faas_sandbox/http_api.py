"""The HTTP front end: FastAPI over a :class:`~faas_sandbox.calls.Backend` (pydantic: here only).

Endpoints::

    GET  /convert?celsius=21         200 {"fahrenheit": [69.8]}   (the tutorial's contract)
    POST /functions/{name}/call      200 {"output": [...], "processid": "..."}
    GET  /calls/{processid}/logs     200 {"processid": "...", "logs": [...]}
    GET  /healthz                    200 {"status": "ok"} | 503 {"status": "unavailable", ...}
    GET  /metrics                    Prometheus text;  GET /docs  OpenAPI UI

Failures are answered, never hung, all as ``{"detail": {"kind", "message", "processid"}}``:
404 not_found; 422 the function failed (compile, forbidden, runtime, memory, ...); 429 too
many calls in flight (Retry-After); 502 Colonies unreachable or refusing; 503 no executor
picked the call up, or it could not fetch the code (Retry-After); 504 timeout.
Blocking Colonies calls run in worker threads, never on the event loop.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from . import calls
from ._version import __version__
from .calls import Backend, CallRequest, CallResult
from .metrics import Metrics
from .metrics import default as default_metrics
from .policy import Policy

log = logging.getLogger(__name__)

# kind -> HTTP status; every other kind (compile, forbidden, runtime, memory, ...) is 422.
STATUS: dict[str, int] = {
    calls.OK: 200,
    calls.NOT_FOUND: 404,
    "busy": 429,
    calls.UNREACHABLE: 502,
    calls.REFUSED: 502,
    calls.NO_EXECUTOR: 503,
    "unavailable": 503,  # the executor could not fetch the code (ColonyFS/S3 down)
    calls.TIMEOUT: 504,
}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How the front end submits: limits come from ``policy``; the backend knows Colonies."""

    policy: Policy = field(default_factory=Policy)
    max_inflight: int = 32  # calls in flight before answering 429
    maxwaittime: int = 10  # seconds a call may wait for an executor (then 503)
    maxretries: int = 0  # exec-timeout requeues per call
    retry_after_seconds: int = 5  # Retry-After on 503


class ErrorDetail(BaseModel):
    kind: str = Field(description="timeout, not_found, no_executor, unreachable, busy, or the "
                                  "sandbox's kind: compile, forbidden, runtime, memory, ...")
    message: str
    processid: str | None = None


class ErrorResponse(BaseModel):
    detail: ErrorDetail


class ConvertResponse(BaseModel):
    fahrenheit: list[Any]


class CallBody(BaseModel):
    args: list[Any] = Field(default_factory=list, description="positional arguments (JSON)")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments (JSON)")
    maxexectime: float | None = Field(None, gt=0, description="seconds; may lower the policy's "
                                                              "wall limit, never raise it")


class CallResponse(BaseModel):
    output: list[Any]
    processid: str | None


class LogsResponse(BaseModel):
    processid: str
    logs: list[str]


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (404, 422, 429, 502, 503, 504)
}


class _Gate:
    """A bounded counter that refuses at once instead of queueing (one event loop: no lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.inflight = 0

    def try_enter(self) -> bool:
        if self.inflight >= self.size:
            return False
        self.inflight += 1
        return True

    def leave(self) -> None:
        self.inflight -= 1


def create_app(backend: Backend, settings: ApiSettings | None = None,
               metrics: Metrics | None = None) -> FastAPI:
    """The FastAPI application; ``backend`` does the Colonies work."""
    settings = settings or ApiSettings()
    app = FastAPI(title="faas-sandbox", version=__version__,
                  description="Call sandboxed Python functions on ColonyOS over HTTP.")
    gate = _Gate(settings.max_inflight)
    # Each call holds one thread while it waits; health and logs get a little headroom.
    limiter = anyio.CapacityLimiter(settings.max_inflight + 4)
    app.state.backend = backend
    app.state.settings = settings
    if metrics is None:
        metrics = default_metrics()
    registry = metrics.registry

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body = generate_latest(registry) if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def error(result: CallResult) -> JSONResponse:
        status = STATUS.get(result.kind, 422)
        headers = {}
        if status == 503:
            headers["Retry-After"] = str(settings.retry_after_seconds)
        elif status == 429:
            headers["Retry-After"] = "1"
        detail = ErrorDetail(kind=result.kind, message=result.message,
                             processid=result.processid)
        return JSONResponse({"detail": detail.model_dump()}, status_code=status, headers=headers)

    async def call(request: CallRequest) -> CallResult:
        if not gate.try_enter():
            log.warning("call %s refused: %d calls in flight", request.function, gate.size)
            metrics.observe_kind("busy", 0.0)
            return CallResult("busy", [], f"too many calls in flight (limit {gate.size}); "
                              "retry later")
        started = time.monotonic()
        try:
            with metrics.inflight():
                result = await anyio.to_thread.run_sync(calls.run_call, backend, request,
                                                        limiter=limiter)
        finally:
            gate.leave()
        seconds = time.monotonic() - started
        metrics.observe_kind(result.kind, seconds)
        log.info("call %s: %s %s in %.3fs", result.processid, request.function, result.kind,
                 seconds)
        return result

    def request_for(function: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                    maxexectime: float | None, tutorial: bool = False) -> CallRequest:
        return calls.make_request(settings.policy, function, args, kwargs, maxexectime,
                                  maxwaittime=settings.maxwaittime,
                                  maxretries=settings.maxretries, tutorial=tutorial)

    @app.get("/convert", response_model=ConvertResponse, responses=_ERRORS,
             summary="The tutorial's Celsius to Fahrenheit function")
    async def convert(celsius: float = Query(..., allow_inf_nan=False)) -> Any:
        request = request_for("convert", (), {"arg": str(float(celsius))}, None, tutorial=True)
        result = await call(request)
        if not result.ok:
            return error(result)
        return {"fahrenheit": result.output}

    @app.post("/functions/{name}/call", response_model=CallResponse, responses=_ERRORS,
              summary="Call a deployed function with JSON arguments")
    async def call_function(name: str, body: CallBody | None = None) -> Any:
        body = body or CallBody()
        if not _NAME.match(name):
            return error(CallResult(calls.NOT_FOUND, [], f"no function named {name!r}"))
        request = request_for(name, tuple(body.args), body.kwargs, body.maxexectime)
        result = await call(request)
        if not result.ok:
            return error(result)
        return {"output": result.output, "processid": result.processid}

    @app.get("/calls/{processid}/logs", response_model=LogsResponse, responses=_ERRORS,
             summary="The captured output (process log) of a call")
    async def call_logs(processid: str) -> Any:
        try:
            lines = await anyio.to_thread.run_sync(backend.logs, processid, limiter=limiter)
        except calls.ColoniesUnreachable as exc:
            return error(CallResult(calls.UNREACHABLE, [], str(exc), processid))
        except calls.ColoniesRefused as exc:
            return error(CallResult(calls.NOT_FOUND, [], str(exc), processid))
        return {"processid": processid, "logs": lines}

    @app.get("/healthz", summary="200 if the Colonies server answers, else 503")
    async def healthz() -> Any:
        try:
            await anyio.to_thread.run_sync(backend.ping, limiter=limiter)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Colonies: "not ready"
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503,
                                headers={"Retry-After": str(settings.retry_after_seconds)})
        return {"status": "ok"}

    return app
