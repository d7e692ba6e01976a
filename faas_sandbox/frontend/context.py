"""What every route of one app shares: its settings and backend, the in-flight gate, the thread
limiter, authentication, metrics. One :class:`Front` per :func:`~.app.create_app`.

Blocking Colonies calls run in worker threads (:meth:`Front.ask`, :meth:`Front.blocking`),
never on the event loop; each call holds one thread while it waits, so the limiter has
``max_inflight`` threads plus a little headroom for health and logs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from prometheus_client import CollectorRegistry, Counter

from ..colonies.calls import Backend
from ..errors import ColoniesError
from ..kinds import ErrorKind
from ..metrics import Metrics
from ..policy import Policy
from .auth import RateLimiter, TokenStore, bearer
from .body import DEFAULT_MAX_BODY_BYTES
from .capacity import Capacity
from .problems import ApiError, from_colonies

_T = TypeVar("_T")

MAX_FUNCTION_LABELS = 256  # distinct function labels on the call counter; then "_other"


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


class Gate:
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


class Front:
    """The state and helpers the routes of one app share."""

    def __init__(self, backend: Backend, settings: ApiSettings, metrics: Metrics) -> None:
        self.backend, self.settings, self.metrics = backend, settings, metrics
        self.gate = Gate(settings.max_inflight)
        # Each call holds one thread while it waits; health and logs get a little headroom.
        self.limiter = anyio.CapacityLimiter(settings.max_inflight + 8)
        self.by_function = _function_counter(metrics.registry)
        self.labelled: set[str] = set()
        self.tokens = settings.tokens
        self.rates = RateLimiter(settings.rate_per_token, max(1, int(2 * settings.rate_per_token)))
        self.capacity = Capacity(backend.alive_executors, settings.capacity_ttl)
        # What each route documents and requires when tokens are on.
        self.auth_codes: tuple[int, ...] = (401, 403) if self.tokens is not None else ()
        self.secured: list[Any] = (
            [Depends(HTTPBearer(auto_error=False))] if self.tokens is not None else []
        )

    async def blocking(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in a worker thread."""
        return await anyio.to_thread.run_sync(lambda: func(*args), limiter=self.limiter)

    async def ask(
        self,
        doing: str,
        func: Callable[..., _T],
        *args: Any,
        missing: ApiError | None = None,
    ) -> _T:
        """``func(*args)`` (a Colonies request) in a worker thread; a failure leaves as the one
        answer for it (:func:`~.problems.from_colonies`), whichever route asked."""
        try:
            return await anyio.to_thread.run_sync(lambda: func(*args), limiter=self.limiter)
        except ColoniesError as exc:
            raise from_colonies(exc, doing, missing=missing) from None

    def authorize(self, request: Request, function: str | None) -> str:
        """The token's name ("-" without auth); 401/403/429 as ApiError."""
        if self.tokens is None:
            return "-"
        token = bearer(request.headers.get("authorization"))
        grant = self.tokens.find(token) if token else None
        if grant is None:
            raise ApiError(ErrorKind.UNAUTHORIZED, "missing or unknown bearer token")
        if function is not None and not grant.allows(function):
            raise ApiError(ErrorKind.DENIED, f"token {grant.name!r} may not call {function!r}")
        wait = self.rates.take(grant.name)
        if wait > 0:
            raise ApiError(
                ErrorKind.BUSY,
                f"token {grant.name!r} is over its rate of "
                f"{self.settings.rate_per_token:g} requests/s",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        request.state.grant = grant
        return grant.name

    def count(self, function: str, kind: str, seconds: float) -> None:
        """One answered call in the metrics (by kind; by function for the first 256 names)."""
        self.metrics.observe_kind(kind, seconds)
        if self.by_function is None:
            return
        if (
            function not in self.labelled
            and len(self.labelled) < MAX_FUNCTION_LABELS
            and kind not in (ErrorKind.NOT_FOUND, ErrorKind.SPEC)
        ):
            self.labelled.add(function)
        label = function if function in self.labelled else "_other"
        self.by_function.labels(function=label, kind=kind).inc()

    async def until_disconnect(
        self, request: Request, func: Callable[[threading.Event], _T]
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
                    func, cancel, limiter=self.limiter, abandon_on_cancel=True
                )
            )
            tg.cancel_scope.cancel()
        return outcome[0] if outcome else None


def answer(body: Any, status: int = 200, processid: str | None = None) -> JSONResponse:
    """A 2xx answer; ``processid`` also as X-Process-Id."""
    headers = {"X-Process-Id": processid} if processid else {}
    return JSONResponse(body, status_code=status, headers=headers)
