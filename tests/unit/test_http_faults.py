"""Every route that asks Colonies answers a failed request the one way (problems.from_colonies,
colonies.faults): unreachable and refused are 502 (/healthz: 503), a refused process lookup is
404, and an unreadable reply is a refusal, never an undocumented 5xx."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from faas_sandbox.colonies.calls import CallRequest, run_call
from faas_sandbox.errors import ColoniesError, ColoniesRefused, ColoniesUnreachable, ReplyUnreadable
from faas_sandbox.frontend.app import ApiSettings, create_app
from faas_sandbox.kinds import ProcessState
from faas_sandbox.metrics import Metrics
from tests.unit.test_http_api import POLICY, FakeBackend, pid

# (the backend method that fails, HTTP method, path, the path as the OpenAPI schema names it)
ROUTES = [
    ("current", "post", "/functions/f/call", "/functions/{name}/call"),  # pinning
    ("submit", "post", "/functions/f/call?mode=async", "/functions/{name}/call"),
    ("submit", "post", "/functions/f/call", "/functions/{name}/call"),
    ("wait", "post", "/functions/f/call", "/functions/{name}/call"),
    ("current", "get", "/convert?celsius=21", "/convert"),
    ("submit", "get", "/convert?celsius=21", "/convert"),
    ("get", "get", f"/calls/{pid('f')}", "/calls/{processid}"),
    ("logs", "get", f"/calls/{pid('f')}/logs", "/calls/{processid}/logs"),
    ("functions", "get", "/functions", "/functions"),
    ("history", "get", "/functions/f", "/functions/{name}"),
    ("ping", "get", "/healthz", "/healthz"),
]
ERRORS = [
    (ColoniesUnreachable("connection refused"), "unreachable"),
    (ColoniesRefused("Access denied", 403), "refused"),
    (ColoniesRefused("Failed to get process, process not found", 404), "refused"),
    (ReplyUnreadable("getfilemsg reply over 16777216 bytes"), "refused"),
]


def failing(method: str, error: ColoniesError) -> TestClient:
    backend = FakeBackend(
        {"f": (ProcessState.SUCCESS, [1], []), "convert": (ProcessState.SUCCESS, [69.8], [])}
    )

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    setattr(backend, method, fail)
    app = create_app(backend, ApiSettings(policy=POLICY), metrics=Metrics(CollectorRegistry()))
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(
    ("error", "kind"), ERRORS, ids=["unreachable", "refused403", "refused404", "unreadable"]
)
@pytest.mark.parametrize(
    ("method", "verb", "path", "documented"),
    ROUTES,
    ids=[f"{verb} {path.replace(pid('f'), 'ID')} ({method})" for method, verb, path, _ in ROUTES],
)
def test_a_failed_colonies_request_gets_the_one_documented_answer(
    method: str, verb: str, path: str, documented: str, error: ColoniesError, kind: str
) -> None:
    client = failing(method, error)
    response = client.request(verb, path, json={} if verb == "post" else None)
    detail = response.json()["detail"]
    lookup = method in ("get", "logs")
    if lookup and isinstance(error, ColoniesRefused):  # the server does not know the id
        expected = (404, "not_found", "no such process")
    else:
        expected = (503 if path == "/healthz" else 502, kind, str(error))
    assert (response.status_code, detail["kind"]) == expected[:2]
    assert expected[2] in detail["message"]
    responses = client.get("/openapi.json").json()["paths"][documented][verb]["responses"]
    assert str(response.status_code) in responses


def test_run_call_reads_colonies_faults_as_the_front_end_does() -> None:
    class Unreadable(FakeBackend):
        def submit(self, request: CallRequest) -> str:
            raise ReplyUnreadable("addprocessmsg reply is not JSON")

    result = run_call(Unreadable(), CallRequest("f"))
    assert (result.kind, result.processid) == ("refused", None)
    assert result.message == (
        "Colonies server's reply to the call cannot be read: addprocessmsg reply is not JSON"
    )
