"""The front end's door: every bad request is a documented 4xx in the one body shape, tokens,
async calls, request ids, hung-up clients, lifecycle reads, the OpenAPI schema."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from faas_sandbox.frontend import auth
from faas_sandbox.frontend.app import ApiSettings, create_app
from faas_sandbox.kinds import ProcessState
from faas_sandbox.metrics import Metrics
from faas_sandbox.policy import Limits, Policy
from tests.unit.test_http_api import POLICY, FakeBackend, pid, revision

OK = (ProcessState.SUCCESS, [1], [])


def client_for(
    backend: FakeBackend, registry: CollectorRegistry | None = None, **settings: Any
) -> TestClient:
    settings.setdefault("policy", POLICY)
    app = create_app(
        backend, ApiSettings(**settings), metrics=Metrics(registry or CollectorRegistry())
    )
    return TestClient(app)


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"detail"}
    assert body["detail"]["kind"] == kind
    assert isinstance(body["detail"]["message"], str) and body["detail"]["message"]
    return body["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"args": [NaN]}',
        b'{"args": [Infinity]}',
        b'{"args": [-Infinity]}',
        b'{"args": [1e309]}',
        b'{"maxexectime": NaN}',
        b'{"kwargs": {"x": 1e400}}',
        b'{"args": [1' + b"0" * 5000 + b"]}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_non_finite_or_unparsable_numbers_are_400_never_submitted(raw: bytes) -> None:
    backend = FakeBackend({"f": OK})
    response = client_for(backend).post(
        "/functions/f/call", content=raw, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "spec")
    assert backend.requests == []


@pytest.mark.parametrize("value", [0, 0.0005, -1, 1e6, "1", True])
def test_out_of_range_maxexectime_is_400(value: Any) -> None:
    backend = FakeBackend({"f": OK})
    response = client_for(backend).post("/functions/f/call", json={"maxexectime": value})
    assert_problem(response, 400, "spec")
    assert backend.requests == []


@pytest.mark.parametrize(
    ("raw", "ctype", "status", "kind"),
    [
        (b'{"arg": [1]}', "application/json", 400, "spec"),  # unknown field
        (b"[1, 2]", "application/json", 400, "spec"),
        (b'{"args": 1}', "application/json", 400, "spec"),
        (b'{"args": [1]', "application/json", 400, "spec"),
        (b'{"args": ["\xff"]}', "application/json", 400, "spec"),  # not UTF-8
        (b'{"args": [1]}', "text/plain", 415, "media_type"),
        (b"args=1", "application/x-www-form-urlencoded", 415, "media_type"),
    ],
)
def test_bad_bodies_are_documented_4xx(raw: bytes, ctype: str, status: int, kind: str) -> None:
    backend = FakeBackend({"f": OK})
    response = client_for(backend).post(
        "/functions/f/call", content=raw, headers={"content-type": ctype}
    )
    assert_problem(response, status, kind)
    assert backend.requests == []


def test_no_body_and_charset_json_are_accepted() -> None:
    client = client_for(FakeBackend({"f": OK}))
    assert client.post("/functions/f/call").status_code == 200
    assert (
        client.post(
            "/functions/f/call",
            content=b'{"args": [1]}',
            headers={"content-type": "application/json; charset=utf-8"},
        ).status_code
        == 200
    )


def test_a_body_over_the_cap_is_413_on_any_route() -> None:
    client = client_for(FakeBackend(), max_body_bytes=1000)
    response = client.request("GET", "/healthz", content=b"x" * 2000)
    assert_problem(response, 413, "too_large")


def test_body_over_the_cap_is_413_before_any_byte_is_read() -> None:
    backend = FakeBackend({"f": OK})
    app = create_app(
        backend,
        ApiSettings(policy=POLICY, max_body_bytes=1000),
        metrics=Metrics(CollectorRegistry()),
    )
    sent: list[dict[str, Any]] = []
    reads: list[int] = []

    async def receive() -> dict[str, Any]:
        reads.append(1)
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/functions/f/call",
        "query_string": b"",
        "headers": [(b"content-length", b"200000000"), (b"content-type", b"application/json")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("t", 80),
        "client": ("c", 1),
        "root_path": "",
    }
    anyio.run(app, scope, receive, send)
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["detail"]["kind"] == "too_large"
    assert reads == []  # not one chunk of the body was pulled in
    assert backend.requests == []


def test_chunked_body_over_the_cap_is_413() -> None:
    backend = FakeBackend({"f": OK})
    client = client_for(backend, max_body_bytes=1000)

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 500

    response = client.post(
        "/functions/f/call", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "too_large")
    assert backend.requests == []


def test_arguments_over_the_policys_max_args_bytes_are_413() -> None:
    backend = FakeBackend({"f": OK})
    policy = Policy(limits=Limits(max_args_bytes=100))
    response = client_for(backend, policy=policy).post(
        "/functions/f/call", json={"args": ["x" * 200]}
    )
    assert "max_args_bytes" in assert_problem(response, 413, "too_large")["message"]
    assert backend.requests == []


@pytest.mark.parametrize(
    "path",
    ["/calls/%00/logs", "/calls/%00", "/calls/" + "a" * 10_000, "/calls/../etc", "/calls/ABC/logs"],
)
def test_malformed_process_ids_are_rejected_without_asking_colonies(path: str) -> None:
    backend = FakeBackend({"f": OK})
    response = client_for(backend).get(path)
    assert response.status_code in (400, 404)
    detail = response.json()["detail"]
    assert "pq:" not in detail["message"]
    assert detail["kind"] in ("spec", "not_found")


def test_unknown_route_and_wrong_method_use_the_one_shape() -> None:
    client = client_for(FakeBackend())
    assert_problem(client.get("/nope"), 404, "not_found")
    response = client.delete("/convert")
    assert_problem(response, 405, "method")
    assert "GET" in response.headers["allow"]


def test_bad_query_is_400_in_the_one_shape() -> None:
    client = client_for(FakeBackend({"convert": OK}))
    for query in ("", "?celsius=abc", "?celsius=nan", "?celsius=1e309", "?celsius=-300"):
        assert_problem(client.get(f"/convert{query}"), 400, "spec")
    assert_problem(client.post("/functions/convert/call?mode=later"), 400, "spec")


def test_request_id_is_echoed_or_generated() -> None:
    client = client_for(FakeBackend({"f": OK}))
    response = client.post("/functions/f/call", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    assert response.headers["X-Process-Id"] == pid("f")
    generated = client.get("/healthz").headers["X-Request-Id"]
    assert len(generated) == 32
    hostile = client.get("/healthz", headers={"X-Request-Id": "a\tb" + "x" * 300})
    assert hostile.headers["X-Request-Id"] != "a\tb" + "x" * 300


def test_async_call_is_202_and_its_status_can_be_read() -> None:
    backend = FakeBackend(
        {
            "add": (ProcessState.SUCCESS, ['{"sum": 3}'], []),
            "bad": (ProcessState.FAILED, [], ["runtime: boom"]),
            "slow": (ProcessState.RUNNING, [], []),
        }
    )
    client = client_for(backend)
    response = client.post("/functions/add/call?mode=async", json={"args": [1, 2]})
    assert response.status_code == 202
    assert response.json() == {"processid": pid("add"), "status_url": f"/calls/{pid('add')}"}
    assert response.headers["X-Process-Id"] == pid("add")
    assert backend.waits == []  # submitted, not waited for
    assert client.get(f"/calls/{pid('add')}").json() == {
        "processid": pid("add"),
        "state": "successful",
        "function": "add",
        "output": [{"sum": 3}],
        "kind": "ok",
        "message": None,
        "revision": None,
    }
    failed = client.get(f"/calls/{pid('bad')}").json()
    assert (failed["state"], failed["kind"], failed["message"]) == ("failed", "runtime", "boom")
    assert client.get(f"/calls/{pid('slow')}").json()["state"] == "running"
    assert_problem(client.get(f"/calls/{pid('nothing')}"), 404, "not_found")


def test_a_client_that_hangs_up_frees_its_slot_and_its_waiting_call_is_removed() -> None:
    backend = FakeBackend({"f": OK})
    backend.release = threading.Event()  # wait() blocks until released or cancelled
    app = create_app(
        backend, ApiSettings(policy=POLICY, max_inflight=1), metrics=Metrics(CollectorRegistry())
    )
    sent: list[dict[str, Any]] = []

    async def scenario() -> None:
        hangup = anyio.Event()
        messages = [{"type": "http.request", "body": b"{}", "more_body": False}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await hangup.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/functions/f/call",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"2")],
            "http_version": "1.1",
            "scheme": "http",
            "server": ("t", 80),
            "client": ("c", 1),
            "root_path": "",
        }
        async with anyio.create_task_group() as tg:
            tg.start_soon(app, scope, receive, send)
            await anyio.to_thread.run_sync(backend.submitted.wait, 5)
            hangup.set()
        await anyio.to_thread.run_sync(backend.wait_ended.wait, 5)

    anyio.run(scenario)
    assert backend.removed == [pid("f")]
    backend.release.set()
    # the one slot is free again
    assert client_app(app).post("/functions/f/call").status_code == 200


def client_app(app: Any) -> TestClient:
    return TestClient(app)


def test_lifecycle_reads_list_and_show_revisions() -> None:
    client = client_for(FakeBackend({"f": OK, "g": OK}))
    assert [f["name"] for f in client.get("/functions").json()] == ["f", "g"]
    detail = client.get("/functions/f").json()
    assert detail["current"] == revision("f", 2).to_json()
    assert [r["number"] for r in detail["revisions"]] == [1, 2]
    assert_problem(client.get("/functions/nope"), 404, "not_found")
    assert_problem(client.get("/functions/bad-name"), 400, "spec")


def test_calls_are_counted_per_function() -> None:
    registry = CollectorRegistry()
    client = client_for(
        FakeBackend({"f": OK, "g": (ProcessState.FAILED, [], ["runtime: x"])}), registry
    )
    client.post("/functions/f/call")
    client.post("/functions/g/call")
    client.post("/functions/nope/call")
    value = registry.get_sample_value
    assert value("faas_http_calls_total", {"function": "f", "kind": "ok"}) == 1
    assert value("faas_http_calls_total", {"function": "g", "kind": "runtime"}) == 1


def test_openapi_documents_the_one_error_shape_and_no_validation_422() -> None:
    schema = client_for(FakeBackend()).get("/openapi.json").json()
    text = json.dumps(schema)
    assert "HTTPValidationError" not in text
    assert "CallBody" in schema["components"]["schemas"]
    call = schema["paths"]["/functions/{name}/call"]["post"]
    assert {"200", "202", "400", "404", "413", "415", "422", "429", "502", "503", "504"} <= set(
        call["responses"]
    )
    assert "401" not in call["responses"]  # no tokens: no auth answers
    for path, operations in schema["paths"].items():
        for op in operations.values():
            assert {"400", "413"} <= set(op["responses"]), path
    assert "ErrorResponse" in schema["components"]["schemas"]


# -- tokens -------------------------------------------------------------------------------------
@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str, str]:
    path = tmp_path / "tokens.json"
    conv = auth.add(path, "conv", auth.parse_patterns("convert,stat*"))
    every = auth.add(path, "all", ("*",))
    return path, conv, every


def test_tokens_file_keeps_salted_hashes_only(tokens: tuple[Path, str, str]) -> None:
    path, conv, every = tokens
    text = path.read_text()
    assert conv not in text and every not in text
    assert conv.startswith("fst_") and len(conv) > 40
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    grants = auth.load(path)
    assert [g.name for g in grants] == ["conv", "all"]
    assert grants[0].salt != grants[1].salt
    with pytest.raises(auth.TokenFileError):
        auth.add(path, "conv", ("*",))
    auth.remove(path, "conv")
    assert [g.name for g in auth.load(path)] == ["all"]


def test_auth_401_403_and_grants(tokens: tuple[Path, str, str]) -> None:
    path, conv, every = tokens
    backend = FakeBackend({"convert": (ProcessState.SUCCESS, [33.8], []), "stats1": OK, "f": OK})
    client = client_for(backend, tokens=auth.TokenStore(path))
    response = client.get("/convert?celsius=1")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert_problem(
        client.get("/convert?celsius=1", headers={"Authorization": "Bearer fst_no"}),
        401,
        "unauthorized",
    )
    conv_h = {"Authorization": f"Bearer {conv}"}
    assert client.get("/convert?celsius=1", headers=conv_h).json() == {"fahrenheit": [33.8]}
    assert client.post("/functions/stats1/call", headers=conv_h).status_code == 200
    assert_problem(client.post("/functions/f/call", headers=conv_h), 403, "denied")
    assert_problem(client.get(f"/calls/{pid('f')}", headers=conv_h), 403, "denied")
    assert [f["name"] for f in client.get("/functions", headers=conv_h).json()] == [
        "convert",
        "stats1",
    ]
    every_h = {"Authorization": f"Bearer {every}"}
    assert client.post("/functions/f/call", headers=every_h).status_code == 200
    assert client.get("/healthz").status_code == 200  # health stays open
    schema = client.get("/openapi.json").json()
    assert "401" in schema["paths"]["/convert"]["get"]["responses"]
    assert schema["components"]["securitySchemes"]


def test_token_removed_from_the_file_stops_working(tokens: tuple[Path, str, str]) -> None:
    path, conv, _ = tokens
    now = [0.0]
    store = auth.TokenStore(path, clock=lambda: now[0])
    assert store.find(conv) is not None
    auth.remove(path, "conv")
    now[0] = 5.0
    assert store.find(conv) is None


def test_rate_limit_per_token_is_429_with_retry_after(tokens: tuple[Path, str, str]) -> None:
    path, conv, every = tokens
    client = client_for(
        FakeBackend({"convert": OK}), tokens=auth.TokenStore(path), rate_per_token=1.0
    )
    conv_h = {"Authorization": f"Bearer {conv}"}
    codes = [client.get("/convert?celsius=1", headers=conv_h).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # bursts of twice the rate
    response = client.get("/convert?celsius=1", headers=conv_h)
    assert_problem(response, 429, "busy")
    assert int(response.headers["Retry-After"]) >= 1
    # another token has its own bucket
    every_h = {"Authorization": f"Bearer {every}"}
    assert client.get("/convert?celsius=1", headers=every_h).status_code == 200
