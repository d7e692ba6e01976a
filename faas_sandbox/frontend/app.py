"""The HTTP front end: FastAPI over a :class:`~faas_sandbox.colonies.calls.Backend` (pydantic:
here and in ``models.py`` only).

Endpoints (docs/http-api.md has the details and examples)::

    GET  /convert?celsius=21                   200 {"fahrenheit": [69.8]}  (the tutorial)
    POST /functions/{name}/call                200 {"output", "processid", "revision"}
    POST /functions/{name}/call?mode=async     202 {"processid", "status_url"}
    GET  /calls/{processid}                    200 {"state", "output", "kind", "message", ...}
    GET  /calls/{processid}/logs               200 {"processid", "logs"}
    GET  /functions, /functions/{name}         what is deployed, a function's revisions
    GET  /healthz   /metrics   /docs   /openapi.json

Every answer that is not 2xx is ``{"detail": {"kind", "message", ...}}`` with the status of
``problems.py``; every answer carries X-Request-Id, every call answer X-Process-Id.
Blocking Colonies calls run in worker threads, never on the event loop; a client that hangs
up releases its slot at once and a call of its still waiting in the queue is removed.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import ValidationError

from .. import sizes
from .._version import __version__
from ..colonies import calls
from ..colonies.calls import Backend, CallRequest, CallResult
from ..errors import ColoniesRefused, ColoniesUnreachable, SpecError
from ..kinds import OK, ErrorKind
from ..metrics import Metrics
from ..metrics import default as default_metrics
from ..names import FUNCTION_NAME_PATTERN, PROCESSID_PATTERN, FunctionName, ProcessId
from ..policy import Policy
from . import docs, problems
from .auth import RateLimiter, TokenStore, bearer
from .body import DEFAULT_MAX_BODY_BYTES, FrontDoor, read_json
from .capacity import Capacity
from .models import (
    AsyncAccepted,
    CallBody,
    CallResponse,
    CallStatus,
    ConvertResponse,
    ErrorResponse,
    FunctionDetail,
    FunctionSummary,
    Health,
    LogsResponse,
)
from .problems import ApiError

log = logging.getLogger(__name__)
_T = TypeVar("_T")

STATUS = problems.STATUS  # kind -> HTTP status (422 for every sandbox kind)
TUTORIAL = FunctionName("convert")
MAX_FUNCTION_LABELS = 256  # distinct function labels on the call counter; then "_other"
_DESCRIPTIONS = {
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


@dataclass(frozen=True, slots=True)
class ApiSettings:
    """How the front end submits: limits come from ``policy``; the backend knows Colonies."""

    policy: Policy = field(default_factory=Policy)
    max_inflight: int = 32  # calls in flight before answering 429
    maxwaittime: int = 10  # seconds a call may wait for an executor
    maxretries: int = 0  # exec-timeout requeues per call
    retry_after_seconds: int = 5  # Retry-After on 503
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tokens: TokenStore | None = None  # None: no authentication (loopback only, or --no-auth)
    rate_per_token: float = 50.0  # requests a second per token (bursts of twice that)
    capacity_ttl: float = 2.0  # seconds the executor list is reused
    pin: bool = True  # pin each call to the function's current revision at submit


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


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in codes}


_COUNTERS: dict[int, Counter] = {}


def _function_counter(registry: CollectorRegistry | None) -> Counter | None:
    if registry is None:
        return None
    if id(registry) not in _COUNTERS:
        _COUNTERS[id(registry)] = Counter(
            "faas_http_calls",
            "Calls answered by the HTTP front end, by function and kind.",
            ["function", "kind"],
            registry=registry,
        )
    return _COUNTERS[id(registry)]


def create_app(
    backend: Backend, settings: ApiSettings | None = None, metrics: Metrics | None = None
) -> FastAPI:
    """The ASGI application; ``backend`` does the Colonies work."""
    settings = settings or ApiSettings()
    app = FastAPI(
        title="faas-sandbox",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        description="Call sandboxed Python functions on ColonyOS over HTTP.",
    )
    problems.install(app, settings.retry_after_seconds)
    gate = _Gate(settings.max_inflight)
    # Each call holds one thread while it waits; health and logs get a little headroom.
    limiter = anyio.CapacityLimiter(settings.max_inflight + 8)
    metrics = metrics or default_metrics()
    by_function = _function_counter(metrics.registry)
    labelled: set[str] = set()
    tokens = settings.tokens
    rates = RateLimiter(settings.rate_per_token, max(1, int(2 * settings.rate_per_token)))
    capacity = Capacity(backend.alive_executors, settings.capacity_ttl)
    auth_codes = (401, 403) if tokens is not None else ()
    secured = [Depends(HTTPBearer(auto_error=False))] if tokens is not None else []
    app.state.backend, app.state.settings = backend, settings

    async def blocking(func: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: func(*args), limiter=limiter)

    def authorize(request: Request, function: str | None) -> str:
        """The token's name ("-" without auth); 401/403/429 as ApiError."""
        if tokens is None:
            return "-"
        token = bearer(request.headers.get("authorization"))
        grant = tokens.find(token) if token else None
        if grant is None:
            raise ApiError(ErrorKind.UNAUTHORIZED, "missing or unknown bearer token")
        if function is not None and not grant.allows(function):
            raise ApiError(ErrorKind.DENIED, f"token {grant.name!r} may not call {function!r}")
        wait = rates.take(grant.name)
        if wait > 0:
            raise ApiError(
                ErrorKind.BUSY,
                f"token {grant.name!r} is over its rate of {settings.rate_per_token:g} requests/s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        request.state.grant = grant
        return grant.name

    def count(function: str, kind: str, seconds: float) -> None:
        metrics.observe_kind(kind, seconds)
        if by_function is None:
            return
        if (
            function not in labelled
            and len(labelled) < MAX_FUNCTION_LABELS
            and kind not in (ErrorKind.NOT_FOUND, ErrorKind.SPEC)
        ):
            labelled.add(function)
        by_function.labels(function=function if function in labelled else "_other", kind=kind).inc()

    async def until_disconnect(
        request: Request, func: Callable[[threading.Event], _T]
    ) -> _T | None:
        """Run ``func(cancel)`` in a thread; if the client hangs up, set ``cancel`` and return
        None at once (the thread notices within ~0.2 s)."""
        cancel = threading.Event()
        outcome: list[_T] = []
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    message = await request.receive()
                    if message["type"] == "http.disconnect":
                        cancel.set()
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(watch)
            outcome.append(
                await anyio.to_thread.run_sync(
                    func, cancel, limiter=limiter, abandon_on_cancel=True
                )
            )
            tg.cancel_scope.cancel()
        return outcome[0] if outcome else None

    async def prepare(request: Request, call: CallRequest) -> CallRequest:
        """503 at once without executors; pin the current revision (404 if none)."""
        if await blocking(capacity.alive) == 0:
            raise ApiError(ErrorKind.NO_EXECUTOR, "no executor of this front end's type is alive")
        if settings.pin:
            try:
                revision = await blocking(backend.current, call.function)
            except ColoniesUnreachable as exc:
                raise ApiError(
                    ErrorKind.UNREACHABLE, f"Colonies server unreachable: {exc}"
                ) from None
            except ColoniesRefused as exc:
                raise ApiError(ErrorKind.REFUSED, f"Colonies server refused: {exc}") from None
            if revision is None:
                raise ApiError(ErrorKind.NOT_FOUND, f"no function {call.function!r} is deployed")
            call = CallRequest(
                call.function,
                call.args,
                call.kwargs,
                call.wall_seconds,
                call.maxwaittime,
                call.maxretries,
                call.tutorial,
                (revision.fileid, revision.sha256),
            )
            request.state.revision = revision.to_json()
        return call

    async def run(request: Request, call: CallRequest) -> CallResult:
        if not gate.try_enter():
            log.warning("call %s refused: %d calls in flight", call.function, gate.size)
            count(call.function, ErrorKind.BUSY, 0.0)
            raise ApiError(
                ErrorKind.BUSY, f"too many calls in flight (limit {gate.size}); retry later"
            )
        started = time.monotonic()
        try:
            with metrics.inflight():
                result = await until_disconnect(
                    request, lambda cancel: calls.run_call(backend, call, cancel)
                )
        finally:
            gate.leave()
        seconds = time.monotonic() - started
        if result is None:
            log.info("call %s: client went away after %.3fs", call.function, seconds)
            result = CallResult(ErrorKind.CANCELLED, [], "the client went away")
        elif result.kind == ErrorKind.NO_EXECUTOR and (await blocking(capacity.alive) or 0) > 0:
            result = CallResult(
                ErrorKind.BUSY,
                [],
                f"every executor was busy for the call's "
                f"{call.maxwaittime} s maxwaittime; retry later",
                result.processid,
            )
        count(call.function, result.kind, seconds)
        log.info("call %s: %s %s in %.3fs", result.processid, call.function, result.kind, seconds)
        return result

    def failure(result: CallResult) -> ApiError:
        return ApiError(
            result.kind,
            result.message,
            processid=result.processid,
            status=499 if result.kind == ErrorKind.CANCELLED else None,
        )

    def answer(
        request: Request, body: dict[str, Any], status: int = 200, processid: str | None = None
    ) -> JSONResponse:
        headers = {"X-Process-Id": processid} if processid else {}
        return JSONResponse(body, status_code=status, headers=headers)

    def make(
        function: FunctionName,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        maxexectime: float | None,
        tutorial: bool = False,
    ) -> CallRequest:
        try:
            call = calls.make_request(
                settings.policy,
                function,
                args,
                kwargs,
                maxexectime,
                maxwaittime=settings.maxwaittime,
                maxretries=settings.maxretries,
                tutorial=tutorial,
            )
        except SpecError as exc:
            raise ApiError(ErrorKind.SPEC, str(exc)) from None
        try:
            size = len(sizes.args_json(args, kwargs))
        except (TypeError, ValueError, RecursionError) as exc:
            raise ApiError(ErrorKind.SPEC, f"arguments cannot travel as JSON: {exc}") from None
        limit = settings.policy.for_function(function).limits.max_args_bytes
        if (why := sizes.args_over(size, limit)) is not None:
            raise ApiError(ErrorKind.TOO_LARGE, f"{function}: {why}")
        return call

    @app.get(
        "/convert",
        response_model=ConvertResponse,
        dependencies=secured,
        responses=_errors(400, *auth_codes, 404, 413, 422, 429, 502, 503, 504),
        summary="The tutorial's Celsius to Fahrenheit function",
    )
    async def convert(
        request: Request,
        celsius: float = Query(
            ...,
            ge=-273.15,
            le=1e300,
            allow_inf_nan=False,
            description="degrees Celsius, from absolute zero up",
        ),
    ) -> Any:
        authorize(request, TUTORIAL)
        call = await prepare(
            request, make(TUTORIAL, (), {"arg": str(float(celsius))}, None, tutorial=True)
        )
        result = await run(request, call)
        if not result.ok:
            raise failure(result)
        return answer(request, {"fahrenheit": result.output}, processid=result.processid)

    call_body_schema = {
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallBody"}}},
        }
    }

    @app.post(
        "/functions/{name}/call",
        response_model=CallResponse,
        dependencies=secured,
        responses={
            202: {"model": AsyncAccepted, "description": "mode=async: submitted"},
            **_errors(400, *auth_codes, 404, 413, 415, 422, 429, 502, 503, 504),
        },
        openapi_extra=call_body_schema,
        summary="Call a deployed function with JSON arguments (sync or async)",
    )
    async def call_function(
        request: Request,
        name: str = Path(..., pattern=FUNCTION_NAME_PATTERN),
        mode: Literal["sync", "async"] = Query("sync"),
    ) -> Any:
        name = FunctionName(name)  # FastAPI checked it against the one pattern (names.py)
        authorize(request, name)
        raw = await read_json(request, settings.max_body_bytes)
        try:
            body = CallBody.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(
                ErrorKind.SPEC, f"body{'.' + where if where else ''}: {first.get('msg')}"[:300]
            ) from None
        call = await prepare(request, make(name, tuple(body.args), body.kwargs, body.maxexectime))
        revision = getattr(request.state, "revision", None)
        if mode == "async":
            try:
                processid = await blocking(backend.submit, call)
            except ColoniesUnreachable as exc:
                raise ApiError(
                    ErrorKind.UNREACHABLE, f"Colonies server unreachable: {exc}"
                ) from None
            except ColoniesRefused as exc:
                raise ApiError(
                    ErrorKind.REFUSED, f"Colonies server refused the call: {exc}"
                ) from None
            count(name, "submitted", 0.0)
            return answer(
                request,
                {"processid": processid, "status_url": f"/calls/{processid}"},
                202,
                processid,
            )
        result = await run(request, call)
        if not result.ok:
            raise failure(result)
        return answer(
            request,
            {"output": result.output, "processid": result.processid, "revision": revision},
            processid=result.processid,
        )

    async def about_process(func: Callable[[str], _T], processid: ProcessId) -> _T:
        """``func(processid)`` in a worker thread (``backend.get``, ``backend.logs``): 502 when
        the server is unreachable; a refusal means there is no such process (404)."""
        try:
            return await blocking(func, processid)  # type: ignore[no-any-return]
        except ColoniesUnreachable as exc:
            raise ApiError(ErrorKind.UNREACHABLE, f"Colonies server unreachable: {exc}") from None
        except ColoniesRefused:
            raise ApiError(ErrorKind.NOT_FOUND, "no such process", processid=processid) from None

    async def fetch(request: Request, processid: ProcessId) -> CallResult:
        authorize(request, None)
        result = await about_process(backend.get, processid)
        grant = getattr(request.state, "grant", None)
        if grant is not None and not grant.allows(result.function):
            raise ApiError(
                ErrorKind.DENIED, f"token {grant.name!r} may not read calls of {result.function!r}"
            )
        return result

    processid_param = Path(..., pattern=PROCESSID_PATTERN, description="64 hex digits")

    @app.get(
        "/calls/{processid}",
        response_model=CallStatus,
        dependencies=secured,
        responses=_errors(400, *auth_codes, 404, 429, 502),
        summary="The state of a call (async or not) and, once final, its result",
    )
    async def call_status(request: Request, processid: str = processid_param) -> Any:
        result = await fetch(request, ProcessId(processid))  # FastAPI checked the pattern
        return answer(
            request, {**result.status_json(), "processid": processid}, processid=processid
        )

    @app.get(
        "/calls/{processid}/logs",
        response_model=LogsResponse,
        dependencies=secured,
        responses=_errors(400, *auth_codes, 404, 429, 502),
        summary="The captured output (process log) of a call",
    )
    async def call_logs(request: Request, processid: str = processid_param) -> Any:
        checked = ProcessId(processid)  # FastAPI checked the pattern
        if tokens is not None:
            await fetch(request, checked)
        lines = await about_process(backend.logs, checked)
        return answer(request, {"processid": processid, "logs": lines}, processid=processid)

    @app.get(
        "/functions",
        response_model=list[FunctionSummary],
        dependencies=secured,
        responses=_errors(*auth_codes, 429, 502),
        summary="The deployed functions",
    )
    async def functions(request: Request) -> Any:
        authorize(request, None)
        grant = getattr(request.state, "grant", None)
        try:
            listed = await blocking(backend.functions)
        except (ColoniesUnreachable, ColoniesRefused) as exc:
            raise ApiError(ErrorKind.UNREACHABLE, f"Colonies server: {exc}") from None
        return [f for f in listed if grant is None or grant.allows(f["name"])]

    @app.get(
        "/functions/{name}",
        response_model=FunctionDetail,
        dependencies=secured,
        responses=_errors(400, *auth_codes, 404, 429, 502),
        summary="A function's revisions, oldest first, and the current one",
    )
    async def function_detail(
        request: Request, name: str = Path(..., pattern=FUNCTION_NAME_PATTERN)
    ) -> Any:
        name = FunctionName(name)  # FastAPI checked it against the one pattern (names.py)
        authorize(request, name)
        try:
            revisions = await blocking(backend.history, name)
        except (ColoniesUnreachable, ColoniesRefused) as exc:
            raise ApiError(ErrorKind.UNREACHABLE, f"Colonies server: {exc}") from None
        if not revisions:
            raise ApiError(ErrorKind.NOT_FOUND, f"no function {name!r} is deployed")
        listed = [r.to_json() for r in revisions]
        return {"name": name, "current": listed[-1], "revisions": listed}

    @app.get(
        "/healthz",
        response_model=Health,
        summary="200 if the Colonies server answers (with the executors seen alive), else 503",
        responses={503: {"model": ErrorResponse, "description": "Colonies unreachable"}},
    )
    async def healthz() -> Any:
        try:
            await blocking(backend.ping)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Colonies: "not ready"
            raise ApiError(ErrorKind.UNREACHABLE, f"Colonies server: {exc}", status=503) from None
        alive = await blocking(capacity.alive, True)
        return {"status": ErrorKind.NO_EXECUTOR if alive == 0 else OK, "executors": alive}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        authorize(request, None)
        body = generate_latest(metrics.registry) if metrics.registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def api_docs() -> HTMLResponse:
        return HTMLResponse(docs.render(app.openapi()))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            error_ref = {
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                }
            }
            for operations in schema.get("paths", {}).values():
                for op in operations.values():
                    responses = op.setdefault("responses", {})
                    if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                        del responses["422"]
                    # the body cap and Content-Length check answer before any route runs
                    for code in ("400", "413"):
                        responses.setdefault(
                            code, {"description": _DESCRIPTIONS[int(code)], **error_ref}
                        )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.pop("HTTPValidationError", None)
            components.pop("ValidationError", None)
            components["CallBody"] = CallBody.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(FrontDoor, max_body_bytes=settings.max_body_bytes)
    return app
