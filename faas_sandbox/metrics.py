"""Prometheus metrics for the executor and the HTTP front end (prometheus_client).

Four collectors, all prefixed ``faas_``::

    faas_calls_total{kind}             counter   kind = "ok" or the error kind of a finished call
    faas_call_seconds                  histogram wall time of a call, as its owner measured it
    faas_inflight_calls                gauge     calls started and not yet finished
    faas_sandbox_kills_total{reason}   counter   sandbox ended a child:
                                                 timeout/cpu/memory/output/crash

Hooks, each one line at the call site::

    with metrics.inflight():                 # around one call
        outcome = sandbox.call(...)
    metrics.observe(outcome, seconds)        # an Outcome: counts the call and any kill
    metrics.observe_kind("timeout", seconds) # a kind string (the HTTP front end; counts no kill)
    metrics.start_metrics_server(9108)       # serve /metrics on 127.0.0.1:9108

The module-level functions use the default registry; tests build their own ``Metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import start_http_server as _start_http_server

from .kinds import OK, ErrorKind

if TYPE_CHECKING:
    from .engine.outcome import Outcome

log = logging.getLogger(__name__)

# Kinds that mean the sandbox (not the user's code) ended the child.
KILL_REASONS: frozenset[str] = frozenset(
    {
        ErrorKind.TIMEOUT.value,
        ErrorKind.CPU.value,
        ErrorKind.MEMORY.value,
        ErrorKind.OUTPUT.value,
        ErrorKind.CRASH.value,
    }
)
# From a 2 ms fork-per-call up to the longest wall limit a policy is likely to grant.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))


class Metrics:
    """The four collectors, registered on one registry."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.registry = registry
        self.calls = Counter(
            "faas_calls",
            "Finished calls by result kind (ok or error kind).",
            ["kind"],
            registry=registry,
        )
        self.seconds = Histogram(
            "faas_call_seconds",
            "Wall time of a call in seconds.",
            buckets=BUCKETS,
            registry=registry,
        )
        self.inflight_calls = Gauge(
            "faas_inflight_calls", "Calls started and not yet finished.", registry=registry
        )
        self.kills = Counter(
            "faas_sandbox_kills",
            "Children the sandbox ended, by reason.",
            ["reason"],
            registry=registry,
        )

    def observe_kind(self, kind: str, seconds: float) -> None:
        """Count one finished call of ``kind`` ("ok" or an error kind) that took ``seconds``."""
        self.calls.labels(kind=kind).inc()
        self.seconds.observe(max(0.0, seconds))

    def observe(self, outcome: Outcome, seconds: float) -> None:
        """Count a sandbox Outcome; a timeout/cpu/memory/output/crash also counts as a kill."""
        kind = OK if outcome.ok else str(outcome.error_kind)
        self.observe_kind(kind, seconds)
        if kind in KILL_REASONS:
            self.kills.labels(reason=kind).inc()

    def killed(self, reason: str) -> None:
        """Count one kill that did not come back as an Outcome (e.g. the forker died)."""
        self.kills.labels(reason=reason).inc()

    @contextmanager
    def inflight(self) -> Iterator[None]:
        """Hold the in-flight gauge up for the duration of the block."""
        self.inflight_calls.inc()
        try:
            yield
        finally:
            self.inflight_calls.dec()


_default: Metrics | None = None


def default() -> Metrics:
    """The process-wide collectors on prometheus_client's default registry, made on first use."""
    global _default
    if _default is None:
        _default = Metrics(REGISTRY)
    return _default


def observe(outcome: Outcome, seconds: float) -> None:
    default().observe(outcome, seconds)


def observe_kind(kind: str, seconds: float) -> None:
    default().observe_kind(kind, seconds)


def killed(reason: str) -> None:
    default().killed(reason)


def inflight() -> Any:
    """Context manager: ``with metrics.inflight(): ...``."""
    return default().inflight()


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve /metrics (default registry) from a daemon thread; returns the server (or None).

    Call it before forking any sandbox child's forker, never inside one.
    """
    default()
    result = _start_http_server(port, addr=addr)
    log.info("metrics on http://%s:%d/metrics", addr, port)
    return result
