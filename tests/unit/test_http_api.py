"""The HTTP front end against a fake backend: every status code it can answer."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from faas_sandbox.calls import EXEC_LIMIT_TEXT, WAIT_LIMIT_TEXT, CallEnd, CallRequest, State
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable
from faas_sandbox.http_api import ApiSettings, create_app
from faas_sandbox.metrics import Metrics
from faas_sandbox.policy import Limits, Policy


def failed(*errors: str) -> tuple[State, list[Any], list[str]]:
    return State.FAILED, [], list(errors)


class FakeBackend:
    """Answers by function name; records every request it was given."""

    def __init__(self, ends: dict[str, tuple[State, list[Any], list[str]]] | None = None) -> None:
        self.ends = ends or {}
        self.requests: list[CallRequest] = []
        self.waits: list[float] = []
        self.unreachable = False
        self.release: threading.Event | None = None  # set: wait() blocks until released
        self.submitted = threading.Event()

    def submit(self, request: CallRequest) -> str:
        if self.unreachable:
            raise ColoniesUnreachable("connection refused")
        self.requests.append(request)
        self.submitted.set()
        return f"pid-{request.function}"

    def wait(self, processid: str, timeout: float) -> CallEnd:
        self.waits.append(timeout)
        if self.release is not None:
            assert self.release.wait(10)
        state, out, errors = self.ends[processid.removeprefix("pid-")]
        return CallEnd(processid, state, out, errors)

    def logs(self, processid: str) -> list[str]:
        if processid == "unknown":
            raise ColoniesRefused("Failed to get logs, process does not exist")
        return ["hello\n", "world\n"]

    def ping(self) -> None:
        if self.unreachable:
            raise ColoniesUnreachable("connection refused")


POLICY = Policy(limits=Limits(wall_seconds=10.0),
                functions={"convert": {"wall_seconds": 5.0}})


def client_for(backend: FakeBackend, **settings: Any) -> TestClient:
    app = create_app(backend, ApiSettings(policy=POLICY, **settings),
                     metrics=Metrics(CollectorRegistry()))
    return TestClient(app)


def test_convert_returns_the_tutorial_contract_exactly() -> None:
    backend = FakeBackend({"convert": (State.SUCCESS, [69.8], [])})
    response = client_for(backend).get("/convert", params={"celsius": 21})
    assert response.status_code == 200
    assert response.json() == {"fahrenheit": [69.8]}
    (request,) = backend.requests
    assert request.tutorial and request.function == "convert"
    assert request.kwargs == {"arg": "21.0"}


def test_every_submit_sets_maxexectime_from_the_policy_and_waits_and_retries() -> None:
    backend = FakeBackend({"convert": (State.SUCCESS, [1], []), "f": (State.SUCCESS, ["2"], [])})
    client = client_for(backend, maxwaittime=7)
    client.get("/convert", params={"celsius": 1})
    client.post("/functions/f/call", json={"maxexectime": 2.2})
    client.post("/functions/f/call", json={"maxexectime": 99})
    client.post("/functions/f/call", json={"maxexectime": 0.01})
    assert [r.maxexectime for r in backend.requests] == [5, 3, 10, 1]
    assert {(r.maxwaittime, r.maxretries) for r in backend.requests} == {(7, 0)}
    # our own deadline covers waiting, running and the server checker's lag
    assert all(w > r.maxwaittime + r.maxexectime for w, r in zip(backend.waits, backend.requests,
                                                                   strict=True))


def test_call_returns_decoded_output_and_processid() -> None:
    backend = FakeBackend({"add": (State.SUCCESS, ['{"sum": 3}'], [])})
    response = client_for(backend).post("/functions/add/call",
                                        json={"args": [1, 2], "kwargs": {"x": [1]}})
    assert response.status_code == 200
    assert response.json() == {"output": [{"sum": 3}], "processid": "pid-add"}
    assert backend.requests[0].args == (1, 2)
    assert backend.requests[0].kwargs == {"x": [1]}


@pytest.mark.parametrize(("error", "status", "kind"), [
    ("runtime: ZeroDivisionError: division by zero", 422, "runtime"),
    ("forbidden: import of 'os' is not allowed", 422, "forbidden"),
    ("compile: SyntaxError: invalid syntax (line 1)", 422, "compile"),
    ("memory: MemoryError", 422, "memory"),
    ("not_found: no function 'nope' in /faas", 404, "not_found"),
    ("timeout: wall limit 1 s exceeded", 504, "timeout"),
    (EXEC_LIMIT_TEXT, 504, "timeout"),
    (WAIT_LIMIT_TEXT, 503, "no_executor"),
])
def test_failures_map_to_status_and_kind(error: str, status: int, kind: str) -> None:
    backend = FakeBackend({"f": failed(error)})
    response = client_for(backend).post("/functions/f/call", json={"args": []})
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail["kind"] == kind
    assert detail["processid"] == "pid-f"
    assert detail["message"]


def test_no_executor_is_503_with_retry_after() -> None:
    backend = FakeBackend({"convert": failed(WAIT_LIMIT_TEXT)})
    response = client_for(backend, retry_after_seconds=7).get("/convert?celsius=3")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["detail"]["kind"] == "no_executor"


def test_still_waiting_at_our_own_deadline_is_503() -> None:
    backend = FakeBackend({"f": (State.WAITING, [], [])})
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 503
    assert "Retry-After" in response.headers


def test_still_running_at_our_own_deadline_is_504() -> None:
    backend = FakeBackend({"f": (State.RUNNING, [], [])})
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 504
    assert response.json()["detail"]["kind"] == "timeout"


def test_unknown_or_malformed_function_name_is_404_without_submitting() -> None:
    backend = FakeBackend()
    response = client_for(backend).post("/functions/bad%20name!/call", json={})
    assert response.status_code == 404
    assert response.json()["detail"]["kind"] == "not_found"
    assert backend.requests == []


def test_colonies_unreachable_is_502() -> None:
    backend = FakeBackend()
    backend.unreachable = True
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 502
    assert response.json()["detail"] == {
        "kind": "unreachable", "processid": None,
        "message": "Colonies server unreachable: connection refused"}


def test_too_many_calls_in_flight_is_429_and_the_slot_frees_up() -> None:
    # Given one slot, held by a call whose wait() blocks
    backend = FakeBackend({"f": (State.SUCCESS, [1], [])})
    backend.release = threading.Event()
    app = create_app(backend, ApiSettings(policy=POLICY, max_inflight=1),
                     metrics=Metrics(CollectorRegistry()))

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            async with anyio.create_task_group() as tg:
                results: list[httpx.Response] = []

                async def first() -> None:
                    results.append(await client.post("/functions/f/call", json={}))

                tg.start_soon(first)
                deadline = time.monotonic() + 5
                while not backend.submitted.is_set() and time.monotonic() < deadline:
                    await anyio.sleep(0.01)
                # When a second call arrives
                second = await client.post("/functions/f/call", json={})
                backend.release.set()  # type: ignore[union-attr]
            third = await client.post("/functions/f/call", json={})
            return results[0], second, third

    first, second, third = anyio.run(scenario)
    # Then it is refused at once, and the first completes; afterwards calls go through again
    assert second.status_code == 429
    assert second.headers["Retry-After"] == "1"
    assert second.json()["detail"]["kind"] == "busy"
    assert first.status_code == 200
    assert third.status_code == 200


def test_healthz_is_200_when_colonies_answers_and_503_when_not() -> None:
    backend = FakeBackend()
    client = client_for(backend)
    assert client.get("/healthz").json() == {"status": "ok"}
    backend.unreachable = True
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"


def test_logs_endpoint_returns_lines_and_404_for_unknown_process() -> None:
    client = client_for(FakeBackend())
    assert client.get("/calls/p1/logs").json() == {"processid": "p1",
                                                   "logs": ["hello\n", "world\n"]}
    assert client.get("/calls/unknown/logs").status_code == 404


def test_openapi_docs_list_the_endpoints() -> None:
    client = client_for(FakeBackend())
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/convert", "/functions/{name}/call", "/healthz"} <= set(paths)


def test_metrics_count_calls_by_kind() -> None:
    registry = CollectorRegistry()
    backend = FakeBackend({"f": failed("runtime: boom"), "convert": (State.SUCCESS, [1.0], [])})
    client = TestClient(create_app(backend, ApiSettings(policy=POLICY), Metrics(registry)))
    client.get("/convert?celsius=1")
    client.post("/functions/f/call", json={})
    assert registry.get_sample_value("faas_calls_total", {"kind": "ok"}) == 1
    assert registry.get_sample_value("faas_calls_total", {"kind": "runtime"}) == 1
    assert registry.get_sample_value("faas_inflight_calls") == 0
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert 'faas_calls_total{kind="runtime"} 1.0' in text
