"""What is deployed: ``GET /functions`` (only the functions the token may call) and
``GET /functions/{name}`` (its revisions, oldest first, and the current one)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Request

from ...kinds import ErrorKind
from ...names import FUNCTION_NAME_PATTERN, FunctionName
from ..context import Front
from ..models import FunctionDetail, FunctionSummary
from ..problems import ApiError, documented


def router(front: Front) -> APIRouter:
    routes = APIRouter()
    backend, auth_codes = front.backend, front.auth_codes

    @routes.get(
        "/functions",
        response_model=list[FunctionSummary],
        dependencies=front.secured,
        responses=documented(*auth_codes, 429, 502),
        summary="The deployed functions",
    )
    async def functions(request: Request) -> Any:
        front.authorize(request, None)
        grant = getattr(request.state, "grant", None)
        listed = await front.ask("the function listing", backend.functions)
        return [f for f in listed if grant is None or grant.allows(f["name"])]

    @routes.get(
        "/functions/{name}",
        response_model=FunctionDetail,
        dependencies=front.secured,
        responses=documented(400, *auth_codes, 404, 429, 502),
        summary="A function's revisions, oldest first, and the current one",
    )
    async def function_detail(
        request: Request, name: str = Path(..., pattern=FUNCTION_NAME_PATTERN)
    ) -> Any:
        name = FunctionName(name)  # FastAPI checked it against the one pattern (names.py)
        front.authorize(request, name)
        revisions = await front.ask("the revision lookup", backend.history, name)
        if not revisions:
            raise ApiError(ErrorKind.NOT_FOUND, f"no function {name!r} is deployed")
        listed = [r.to_json() for r in revisions]
        return {"name": name, "current": listed[-1], "revisions": listed}

    return routes
