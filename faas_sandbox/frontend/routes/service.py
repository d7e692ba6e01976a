"""The service's own routes: ``GET /healthz`` (open), ``/metrics`` (a token when tokens are
on), ``/docs`` (open; the OpenAPI schema rendered on the server)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ...errors import ColoniesError
from ...kinds import OK, ErrorKind
from .. import docs
from ..context import Front
from ..models import ErrorResponse, Health
from ..problems import ApiError, from_colonies


def router(front: Front) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/healthz",
        response_model=Health,
        summary="200 if the Colonies server answers (with the executors seen alive), else 503",
        responses={503: {"model": ErrorResponse, "description": "Colonies unreachable"}},
    )
    async def healthz() -> Any:
        try:
            await front.blocking(front.backend.ping)
        except ColoniesError as exc:  # not ready: 503, with the one reading of the failure
            raise from_colonies(exc, "the health check", status=503) from None
        except Exception as exc:  # noqa: BLE001 - any failure to reach Colonies: "not ready"
            raise ApiError(ErrorKind.UNREACHABLE, f"Colonies server: {exc}", status=503) from None
        alive = await front.blocking(front.capacity.alive, True)
        return {"status": ErrorKind.NO_EXECUTOR if alive == 0 else OK, "executors": alive}

    @routes.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        front.authorize(request, None)
        registry = front.metrics.registry
        body = generate_latest(registry) if registry is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @routes.get("/docs", include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        return HTMLResponse(docs.render(request.app.openapi()))

    return routes
