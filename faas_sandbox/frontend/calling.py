"""The way of one call through the front end, for ``GET /convert`` and
``POST /functions/{name}/call``: build the request (:func:`make`), check capacity and pin the
current revision (:func:`prepare`), run it in a slot while the client stays (:func:`run`), and
turn a failed result into its answer (:func:`failure`).

A client that hangs up releases its slot at once, and a call of its still waiting in the queue
is removed (``calls.run_call``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Request

from .. import sizes
from ..colonies import calls
from ..colonies.calls import CallRequest, CallResult
from ..errors import SpecError
from ..kinds import ErrorKind
from ..names import FunctionName
from .context import Front
from .problems import ApiError

log = logging.getLogger(__name__)


def make(
    front: Front,
    function: FunctionName,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    maxexectime: float | None,
    tutorial: bool = False,
) -> CallRequest:
    """The call request under the policy; 400 ``spec`` or 413 ``too_large`` as ApiError."""
    settings = front.settings
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


async def prepare(front: Front, request: Request, call: CallRequest) -> CallRequest:
    """503 at once without executors; pin the current revision (404 if none)."""
    if await front.blocking(front.capacity.alive) == 0:
        raise ApiError(ErrorKind.NO_EXECUTOR, "no executor of this front end's type is alive")
    if front.settings.pin:
        revision = await front.ask("the revision lookup", front.backend.current, call.function)
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


async def run(front: Front, request: Request, call: CallRequest) -> CallResult:
    """Submit and wait in a slot (429 at once without one); the result, counted."""
    gate = front.gate
    if not gate.try_enter():
        log.warning("call %s refused: %d calls in flight", call.function, gate.size)
        front.count(call.function, ErrorKind.BUSY, 0.0)
        raise ApiError(ErrorKind.BUSY, f"too many calls in flight (limit {gate.size}); retry later")
    started = time.monotonic()
    try:
        with front.metrics.inflight():
            result = await front.until_disconnect(
                request, lambda cancel: calls.run_call(front.backend, call, cancel)
            )
    finally:
        gate.leave()
    seconds = time.monotonic() - started
    if result is None:
        log.info("call %s: client went away after %.3fs", call.function, seconds)
        result = CallResult(ErrorKind.CANCELLED, [], "the client went away")
    elif (
        result.kind == ErrorKind.NO_EXECUTOR
        and (await front.blocking(front.capacity.alive) or 0) > 0
    ):
        result = CallResult(
            ErrorKind.BUSY,
            [],
            f"every executor was busy for the call's {call.maxwaittime} s maxwaittime; retry later",
            result.processid,
        )
    front.count(call.function, result.kind, seconds)
    log.info("call %s: %s %s in %.3fs", result.processid, call.function, result.kind, seconds)
    return result


def failure(result: CallResult) -> ApiError:
    """The answer to a call that did not succeed (499 when its client went away)."""
    return ApiError(
        result.kind,
        result.message,
        processid=result.processid,
        status=499 if result.kind == ErrorKind.CANCELLED else None,
    )
