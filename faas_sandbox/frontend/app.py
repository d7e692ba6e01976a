"""The HTTP front end: :func:`create_app` builds the FastAPI app over a
:class:`~faas_sandbox.colonies.calls.Backend` (pydantic: in the front end only).

Endpoints (docs/http-api.md has the details and examples; ``routes/`` one module each)::

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
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from .._version import __version__
from ..colonies.calls import Backend
from ..metrics import Metrics
from ..metrics import default as default_metrics
from . import problems
from .body import FrontDoor
from .context import ApiSettings, Front
from .models import CallBody
from .routes import calls, convert, functions, service

__all__ = ["ApiSettings", "create_app"]


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
    front = Front(backend, settings, metrics or default_metrics())
    app.state.backend, app.state.settings = backend, settings
    for routes in (convert, calls, functions, service):
        app.include_router(routes.router(front))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(FrontDoor, max_body_bytes=settings.max_body_bytes)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema with the one error body everywhere: no validation 422, and the 400/413
    the body cap and Content-Length check answer before any route runs; built once."""
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
                for code in ("400", "413"):
                    responses.setdefault(
                        code, {"description": problems.DESCRIPTIONS[int(code)], **error_ref}
                    )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["CallBody"] = CallBody.model_json_schema()
        app.openapi_schema = schema
    return app.openapi_schema
