"""Calls: make one, read one.

    POST /functions/{name}/call                200 {"output", "processid", "revision"}
    POST /functions/{name}/call?mode=async     202 {"processid", "status_url"}
    GET  /calls/{processid}                    200 {"state", "output", "kind", "message", ...}
    GET  /calls/{processid}/logs               200 {"processid", "logs"}

With tokens on, a call's status and logs are readable only by a token that may call its
function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from pydantic import ValidationError

from ...colonies.calls import CallResult
from ...kinds import ErrorKind
from ...names import FUNCTION_NAME_PATTERN, PROCESSID_PATTERN, FunctionName, ProcessId
from ..body import read_json
from ..calling import failure, make, prepare, run
from ..context import Front, answer
from ..models import AsyncAccepted, CallBody, CallResponse, CallStatus, LogsResponse
from ..problems import ApiError, documented

_T = TypeVar("_T")

CALL_BODY_SCHEMA = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CallBody"}}},
    }
}


def router(front: Front) -> APIRouter:
    routes = APIRouter()
    backend, auth_codes = front.backend, front.auth_codes

    @routes.post(
        "/functions/{name}/call",
        response_model=CallResponse,
        dependencies=front.secured,
        responses={
            202: {"model": AsyncAccepted, "description": "mode=async: submitted"},
            **documented(400, *auth_codes, 404, 413, 415, 422, 429, 502, 503, 504),
        },
        openapi_extra=CALL_BODY_SCHEMA,
        summary="Call a deployed function with JSON arguments (sync or async)",
    )
    async def call_function(
        request: Request,
        name: str = Path(..., pattern=FUNCTION_NAME_PATTERN),
        mode: Literal["sync", "async"] = Query("sync"),
    ) -> Any:
        name = FunctionName(name)  # FastAPI checked it against the one pattern (names.py)
        front.authorize(request, name)
        raw = await read_json(request, front.settings.max_body_bytes)
        try:
            body = CallBody.model_validate(raw if raw is not None else {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise ApiError(
                ErrorKind.SPEC, f"body{'.' + where if where else ''}: {first.get('msg')}"[:300]
            ) from None
        call = make(front, name, tuple(body.args), body.kwargs, body.maxexectime)
        call = await prepare(front, request, call)
        revision = getattr(request.state, "revision", None)
        if mode == "async":
            processid = await front.ask("the call", backend.submit, call)
            front.count(name, "submitted", 0.0)
            return answer(
                {"processid": processid, "status_url": f"/calls/{processid}"}, 202, processid
            )
        result = await run(front, request, call)
        if not result.ok:
            raise failure(result)
        return answer(
            {"output": result.output, "processid": result.processid, "revision": revision},
            processid=result.processid,
        )

    async def about_process(func: Callable[[str], _T], processid: ProcessId) -> _T:
        """``func(processid)`` (``backend.get``, ``backend.logs``): a refusal means there is no
        such process (404: the server does not know it, or it is not ours to read)."""
        missing = ApiError(ErrorKind.NOT_FOUND, "no such process", processid=processid)
        return await front.ask("the process lookup", func, processid, missing=missing)

    async def fetch(request: Request, processid: ProcessId) -> CallResult:
        front.authorize(request, None)
        result = await about_process(backend.get, processid)
        grant = getattr(request.state, "grant", None)
        if grant is not None and not grant.allows(result.function):
            raise ApiError(
                ErrorKind.DENIED, f"token {grant.name!r} may not read calls of {result.function!r}"
            )
        return result

    processid_param = Path(..., pattern=PROCESSID_PATTERN, description="64 hex digits")

    @routes.get(
        "/calls/{processid}",
        response_model=CallStatus,
        dependencies=front.secured,
        responses=documented(400, *auth_codes, 404, 429, 502),
        summary="The state of a call (async or not) and, once final, its result",
    )
    async def call_status(request: Request, processid: str = processid_param) -> Any:
        result = await fetch(request, ProcessId(processid))  # FastAPI checked the pattern
        return answer({**result.status_json(), "processid": processid}, processid=processid)

    @routes.get(
        "/calls/{processid}/logs",
        response_model=LogsResponse,
        dependencies=front.secured,
        responses=documented(400, *auth_codes, 404, 429, 502),
        summary="The captured output (process log) of a call",
    )
    async def call_logs(request: Request, processid: str = processid_param) -> Any:
        checked = ProcessId(processid)  # FastAPI checked the pattern
        if front.tokens is not None:
            await fetch(request, checked)
        lines = await about_process(backend.logs, checked)
        return answer({"processid": processid, "logs": lines}, processid=processid)

    return routes
