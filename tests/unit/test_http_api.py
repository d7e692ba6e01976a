"""The HTTP front end against a fake backend: every status code it can answer."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from faas_sandbox.colonies.calls import EXEC_LIMIT_TEXT, WAIT_LIMIT_TEXT, CallRequest, CallResult
from faas_sandbox.colonies.lifecycle import Revision
from faas_sandbox.colonies.spec import parse_process
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable, SpecError
from faas_sandbox.frontend.app import ApiSettings, create_app
from faas_sandbox.kinds import ProcessState
from faas_sandbox.metrics import Metrics
from faas_sandbox.policy import Limits, Policy
from tests.unit.test_names import KEYWORD_NAMES, NOT_KEYWORD_NAMES


def failed(*errors: str) -> tuple[ProcessState, list[Any], list[str]]:
    return ProcessState.FAILED, [], list(errors)


def pid(function: str) -> str:
    return hashlib.sha256(function.encode()).hexdigest()


def revision(name: str, number: int = 1) -> Revision:
    fileid = hashlib.sha256(f"{name}-{number}".encode()).hexdigest()
    return Revision(
        number, fileid, hashlib.sha256(name.encode()).hexdigest(), 42, "2026-12-06T00:00:00Z", {}
    )


def seen(
    processid: str,
    state: ProcessState,
    out: list[Any] | None = None,
    errors: list[str] | None = None,
    name: str = "",
) -> CallResult:
    """The result a backend reads from a process in ``state`` (``convert``: the tutorial form)."""
    kwargs = {"function": name, **({"arg": "21"} if name == "convert" else {})} if name else {}
    return CallResult.from_process(
        {
            "processid": processid,
            "state": int(state),
            "out": out or [],
            "errors": errors or [],
            "spec": {"kwargs": kwargs},
        }
    )


class FakeBackend:
    """Answers by function name; records every request it was given."""

    def __init__(
        self,
        ends: dict[str, tuple[ProcessState, list[Any], list[str]]] | None = None,
        alive: int | None = 1,
    ) -> None:
        self.ends = ends or {}
        self.requests: list[CallRequest] = []
        self.waits: list[float] = []
        self.removed: list[str] = []
        self.unreachable = False
        self.alive = alive
        self.release: threading.Event | None = None  # set: wait() blocks until released
        self.submitted = threading.Event()
        self.wait_ended = threading.Event()
        self.names = {pid(name): name for name in self.ends}

    def submit(self, request: CallRequest) -> str:
        if self.unreachable:
            raise ColoniesUnreachable("connection refused")
        self.requests.append(request)
        self.submitted.set()
        return pid(request.function)

    def wait(
        self, processid: str, timeout: float, cancel: threading.Event | None = None
    ) -> CallResult:
        self.waits.append(timeout)
        try:
            if self.release is not None:
                while not self.release.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        return seen(processid, ProcessState.WAITING)
            return self.get(processid)
        finally:
            self.wait_ended.set()

    def get(self, processid: str) -> CallResult:
        if processid not in self.names:
            raise ColoniesRefused("Failed to get process", 404)
        name = self.names[processid]
        state, out, errors = self.ends[name]
        return seen(processid, state, out, errors, name)

    def remove(self, processid: str) -> None:
        self.removed.append(processid)

    def logs(self, processid: str) -> list[str]:
        if processid not in self.names:
            raise ColoniesRefused("Failed to get logs, process does not exist")
        return ["hello\n", "world\n"]

    def ping(self) -> None:
        if self.unreachable:
            raise ColoniesUnreachable("connection refused")

    def alive_executors(self) -> int:
        if self.alive is None:
            raise ColoniesUnreachable("connection refused")
        return self.alive

    def current(self, name: str) -> Revision | None:
        if self.unreachable:
            raise ColoniesUnreachable("connection refused")
        return revision(name) if name in self.ends else None

    def history(self, name: str) -> list[Revision]:
        return [revision(name, 1), revision(name, 2)] if name in self.ends else []

    def functions(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "size": 42, "revisions": 2, "deployed_at": "t", "fileid": "x"}
            for n in sorted(self.ends)
        ]


POLICY = Policy(limits=Limits(wall_seconds=10.0), functions={"convert": {"wall_seconds": 5.0}})


def client_for(backend: FakeBackend, **settings: Any) -> TestClient:
    app = create_app(
        backend, ApiSettings(policy=POLICY, **settings), metrics=Metrics(CollectorRegistry())
    )
    return TestClient(app)


def test_convert_returns_the_tutorial_contract_exactly() -> None:
    backend = FakeBackend({"convert": (ProcessState.SUCCESS, [69.8], [])})
    response = client_for(backend).get("/convert", params={"celsius": 21})
    assert response.status_code == 200
    assert response.json() == {"fahrenheit": [69.8]}
    (request,) = backend.requests
    assert request.tutorial and request.function == "convert"
    assert request.kwargs == {"arg": "21.0"}


def test_every_submit_sets_maxexectime_from_the_policy_and_waits_and_retries() -> None:
    backend = FakeBackend(
        {"convert": (ProcessState.SUCCESS, [1], []), "f": (ProcessState.SUCCESS, ["2"], [])}
    )
    client = client_for(backend, maxwaittime=7)
    client.get("/convert", params={"celsius": 1})
    client.post("/functions/f/call", json={"maxexectime": 2.2})
    client.post("/functions/f/call", json={"maxexectime": 99})
    client.post("/functions/f/call", json={"maxexectime": 0.01})
    assert [r.pin for r in backend.requests] == [
        (revision(n).fileid, revision(n).sha256) for n in ("convert", "f", "f", "f")
    ]
    assert [r.wall_seconds for r in backend.requests] == [5.0, 2.2, 10.0, 0.01]
    assert [r.maxexectime for r in backend.requests] == [6, 4, 11, 2]  # + room to close
    assert {(r.maxwaittime, r.maxretries) for r in backend.requests} == {(7, 0)}
    # our own deadline covers waiting, running and the server checker's lag
    assert all(
        w > r.maxwaittime + r.maxexectime
        for w, r in zip(backend.waits, backend.requests, strict=True)
    )


def test_call_returns_decoded_output_and_processid() -> None:
    backend = FakeBackend({"add": (ProcessState.SUCCESS, ['{"sum": 3}'], [])})
    response = client_for(backend).post(
        "/functions/add/call", json={"args": [1, 2], "kwargs": {"x": [1]}}
    )
    assert response.status_code == 200
    assert response.json() == {
        "output": [{"sum": 3}],
        "processid": pid("add"),
        "revision": revision("add").to_json(),
    }
    assert response.headers["X-Process-Id"] == pid("add")
    assert backend.requests[0].args == (1, 2)
    assert backend.requests[0].kwargs == {"x": [1]}


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ("runtime: ZeroDivisionError: division by zero", 422, "runtime"),
        ("forbidden: import of 'os' is not allowed", 422, "forbidden"),
        ("compile: SyntaxError: invalid syntax (line 1)", 422, "compile"),
        ("memory: MemoryError", 422, "memory"),
        ("not_found: no function 'nope' in /faas", 404, "not_found"),
        ("timeout: wall limit 1 s exceeded", 504, "timeout"),
        (EXEC_LIMIT_TEXT, 504, "timeout"),
        (WAIT_LIMIT_TEXT, 429, "busy"),  # executors alive but none took it: saturated
    ],
)
def test_failures_map_to_status_and_kind(error: str, status: int, kind: str) -> None:
    backend = FakeBackend({"f": failed(error)})
    response = client_for(backend).post("/functions/f/call", json={"args": []})
    assert response.status_code == status
    detail = response.json()["detail"]
    assert detail["kind"] == kind
    assert detail["processid"] == pid("f")
    assert response.headers["X-Process-Id"] == pid("f")
    assert detail["message"]


def test_no_executor_alive_is_503_at_once_without_submitting() -> None:
    backend = FakeBackend({"convert": (ProcessState.SUCCESS, [1], [])}, alive=0)
    response = client_for(backend, retry_after_seconds=7).get("/convert?celsius=3")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["detail"]["kind"] == "no_executor"
    assert backend.requests == []


def test_executors_gone_while_the_call_waited_is_503() -> None:
    backend = FakeBackend({"convert": failed(WAIT_LIMIT_TEXT)}, alive=1)
    client = client_for(backend, capacity_ttl=0.0)
    backend.submitted.clear()

    def vanish() -> None:  # the executor dies once the call is in the queue
        backend.submitted.wait(5)
        backend.alive = 0

    threading.Thread(target=vanish).start()
    backend.release = threading.Event()
    threading.Timer(0.2, backend.release.set).start()
    response = client.get("/convert?celsius=3")
    assert response.status_code == 503
    assert response.json()["detail"]["kind"] == "no_executor"


def test_still_waiting_at_our_own_deadline_with_executors_alive_is_429() -> None:
    backend = FakeBackend({"f": (ProcessState.WAITING, [], [])})
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 429
    assert response.json()["detail"]["kind"] == "busy"
    assert "Retry-After" in response.headers


def test_still_running_at_our_own_deadline_is_504() -> None:
    backend = FakeBackend({"f": (ProcessState.RUNNING, [], [])})
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 504
    assert response.json()["detail"]["kind"] == "timeout"


def test_malformed_function_name_is_400_and_unknown_is_404_without_submitting() -> None:
    backend = FakeBackend()
    response = client_for(backend).post("/functions/bad%20name!/call", json={})
    assert response.status_code == 400
    assert response.json()["detail"]["kind"] == "spec"
    response = client_for(backend).post("/functions/nope/call", json={})
    assert response.status_code == 404
    assert response.json()["detail"] == {
        "kind": "not_found",
        "message": "no function 'nope' is deployed",
    }
    assert backend.requests == []


def test_colonies_unreachable_is_502() -> None:
    backend = FakeBackend({"f": (ProcessState.SUCCESS, [1], [])}, alive=None)
    backend.unreachable = True
    response = client_for(backend).post("/functions/f/call", json={})
    assert response.status_code == 502
    assert response.json()["detail"] == {
        "kind": "unreachable",
        "message": "Colonies server unreachable: connection refused",
    }


def test_too_many_calls_in_flight_is_429_and_the_slot_frees_up() -> None:
    # Given one slot, held by a call whose wait() blocks
    backend = FakeBackend({"f": (ProcessState.SUCCESS, [1], [])})
    backend.release = threading.Event()
    app = create_app(
        backend, ApiSettings(policy=POLICY, max_inflight=1), metrics=Metrics(CollectorRegistry())
    )

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
    assert client.get("/healthz").json() == {"status": "ok", "executors": 1}
    backend.alive = 0
    assert client.get("/healthz").json() == {"status": "no_executor", "executors": 0}
    backend.unreachable = True
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["detail"]["kind"] == "unreachable"


def test_logs_endpoint_returns_lines_and_404_for_unknown_process() -> None:
    client = client_for(FakeBackend({"f": (ProcessState.SUCCESS, [1], [])}))
    assert client.get(f"/calls/{pid('f')}/logs").json() == {
        "processid": pid("f"),
        "logs": ["hello\n", "world\n"],
    }
    response = client.get(f"/calls/{pid('unknown')}/logs")
    assert response.status_code == 404
    assert response.json()["detail"]["kind"] == "not_found"


@pytest.mark.parametrize(
    "name", [n for n in (*KEYWORD_NAMES, *NOT_KEYWORD_NAMES) if isinstance(n, str) and n]
)
def test_the_front_end_and_the_spec_decoder_take_the_same_keyword_names(name: str) -> None:
    """One rule (names.keyword_name): a name the executor would refuse never gets submitted,
    and a name the front end takes is one the executor takes."""
    backend = FakeBackend({"f": (ProcessState.SUCCESS, [1], [])})
    response = client_for(backend).post("/functions/f/call", json={"kwargs": {name: 1}})
    try:
        parse_process(
            {
                "processid": pid("f"),
                "spec": {
                    "funcname": "execute",
                    "kwargs": {"function": "f", "kwargs": json.dumps({name: 1})},
                },
            }
        )
        decoded = True
    except SpecError:
        decoded = False
    assert (response.status_code, len(backend.requests)) == ((200, 1) if decoded else (400, 0))


class LookupFailing(FakeBackend):
    """``get`` and ``logs`` raise ``error`` (the server unreachable, or refusing)."""

    def __init__(self, error: Exception) -> None:
        super().__init__({"f": (ProcessState.SUCCESS, [1], [])})
        self.error = error

    def get(self, processid: str) -> CallResult:
        raise self.error

    def logs(self, processid: str) -> list[str]:
        raise self.error


@pytest.mark.parametrize("path", ["/calls/{}", "/calls/{}/logs"])
@pytest.mark.parametrize(
    ("error", "status", "kind", "message"),
    [
        (
            ColoniesUnreachable("connection refused"),
            502,
            "unreachable",
            "Colonies server unreachable: connection refused",
        ),
        (ColoniesRefused("Failed to get process", 500), 404, "not_found", "no such process"),
    ],
)
def test_status_and_logs_answer_a_failed_lookup_alike(path, error, status, kind, message) -> None:
    response = client_for(LookupFailing(error)).get(path.format(pid("f")))
    assert response.status_code == status
    detail = response.json()["detail"]
    assert (detail["kind"], detail["message"]) == (kind, message)
    assert detail.get("processid") == (pid("f") if kind == "not_found" else None)


def test_openapi_docs_list_the_endpoints() -> None:
    client = client_for(FakeBackend())
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/functions/{name}/call" in page.text
    assert "<script" not in page.text and "cdn" not in page.text.lower()
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/convert", "/functions/{name}/call", "/healthz"} <= set(paths)


def test_metrics_count_calls_by_kind() -> None:
    registry = CollectorRegistry()
    backend = FakeBackend(
        {"f": failed("runtime: boom"), "convert": (ProcessState.SUCCESS, [1.0], [])}
    )
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
