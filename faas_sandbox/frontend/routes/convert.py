"""``GET /convert?celsius=21`` -> ``200 {"fahrenheit": [69.8]}``: the tutorial's function, called
with the tutorial's spec form (kwargs ``{function, arg}``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from ...names import FunctionName
from ..calling import failure, make, prepare, run
from ..context import Front, answer
from ..models import ConvertResponse
from ..problems import documented

TUTORIAL = FunctionName("convert")


def router(front: Front) -> APIRouter:
    routes = APIRouter()

    @routes.get(
        "/convert",
        response_model=ConvertResponse,
        dependencies=front.secured,
        responses=documented(400, *front.auth_codes, 404, 413, 422, 429, 502, 503, 504),
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
        front.authorize(request, TUTORIAL)
        call = make(front, TUTORIAL, (), {"arg": str(float(celsius))}, None, tutorial=True)
        call = await prepare(front, request, call)
        result = await run(front, request, call)
        if not result.ok:
            raise failure(result)
        return answer({"fahrenheit": result.output}, processid=result.processid)

    return routes
