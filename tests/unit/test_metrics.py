"""Metrics hooks on a private registry."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from faas_sandbox.engine.outcome import ErrorKind, Outcome
from faas_sandbox.metrics import Metrics


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_observe_counts_calls_by_kind_and_kills_by_reason(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    m.observe(Outcome(True, 1), 0.002)
    m.observe(Outcome.failure(ErrorKind.MEMORY, "MemoryError"), 0.3)
    m.observe(Outcome.failure(ErrorKind.RUNTIME, "ValueError"), 0.01)
    sample = registry.get_sample_value
    assert sample("faas_calls_total", {"kind": "ok"}) == 1
    assert sample("faas_calls_total", {"kind": "memory"}) == 1
    assert sample("faas_calls_total", {"kind": "runtime"}) == 1
    assert sample("faas_sandbox_kills_total", {"reason": "memory"}) == 1
    assert sample("faas_sandbox_kills_total", {"reason": "runtime"}) is None
    assert sample("faas_call_seconds_count") == 3
    assert sample("faas_call_seconds_bucket", {"le": "0.005"}) == 1


def test_observe_kind_counts_no_kill(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    m.observe_kind("timeout", 1.0)
    assert registry.get_sample_value("faas_calls_total", {"kind": "timeout"}) == 1
    assert registry.get_sample_value("faas_sandbox_kills_total", {"reason": "timeout"}) is None
    m.killed("crash")
    assert registry.get_sample_value("faas_sandbox_kills_total", {"reason": "crash"}) == 1


def test_inflight_goes_up_and_back_down_even_on_error(registry: CollectorRegistry) -> None:
    m = Metrics(registry)
    with m.inflight():
        assert registry.get_sample_value("faas_inflight_calls") == 1
    with pytest.raises(RuntimeError), m.inflight():
        raise RuntimeError("boom")
    assert registry.get_sample_value("faas_inflight_calls") == 0


def test_start_metrics_server_serves_the_default_registry() -> None:
    import socket

    import httpx

    from faas_sandbox import metrics

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server, _thread = metrics.start_metrics_server(port)
    try:
        metrics.observe_kind("ok", 0.01)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'faas_calls_total{kind="ok"}' in text
        assert "faas_inflight_calls" in text
    finally:
        server.shutdown()
        server.server_close()
