"""The HTTP front end on the real stack: our executor and `faas-sandbox http` as subprocesses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from faas_live import CONVERT_SOURCE, deploy, executor, free_port, frontend, unique

pytestmark = pytest.mark.colonies

SUFFIX = unique("")
ADD = f"add_{SUFFIX}"
EVIL = f"evil_{SUFFIX}"
SLEEPY = f"sleepy_{SUFFIX}"
SOURCES = {
    ADD: f"def {ADD}(a, b, scale=1):\n    print('adding', a, b)\n"
    f"    return {{'sum': (a + b) * scale}}\n",
    EVIL: f"def {EVIL}():\n    import os\n    return os.getcwd()\n",
    SLEEPY: f"import time\n\ndef {SLEEPY}():\n    time.sleep(30)\n    return 'woke'\n",
}


@pytest.fixture(scope="module")
def executor_type(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    deploy("convert", CONVERT_SOURCE)
    for name, source in SOURCES.items():
        deploy(name, source)
    etype = unique("faas-it-")
    with executor(etype, tmp_path_factory.mktemp("exec") / "executor.log"):
        yield etype


@pytest.fixture(scope="module")
def api(executor_type: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with frontend(executor_type, tmp_path_factory.mktemp("http") / "http.log") as url:
        yield url


def post(url: str, name: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/functions/{name}/call", json=body, timeout=60)


def test_healthz_is_200_when_colonies_answers(api: str) -> None:
    response = httpx.get(f"{api}/healthz", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "executors": 1}


def test_convert_returns_exactly_the_tutorials_body(api: str) -> None:
    response = httpx.get(f"{api}/convert", params={"celsius": 21}, timeout=60)
    assert response.status_code == 200
    assert response.text == '{"fahrenheit":[69.8]}'


def test_call_returns_structured_output_and_processid(api: str) -> None:
    response = post(api, ADD, {"args": [2, 3], "kwargs": {"scale": 10}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["output"] == [{"sum": 50}]
    assert len(body["processid"]) == 64
    logs = httpx.get(f"{api}/calls/{body['processid']}/logs", timeout=10).json()["logs"]
    assert any("adding 2 3" in line for line in logs)


def test_hostile_function_is_422_with_its_kind(api: str) -> None:
    response = post(api, EVIL, {})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail["kind"] == "forbidden"
    assert "os" in detail["message"]
    assert len(detail["processid"]) == 64


def test_timeout_is_504_and_answered_promptly(api: str) -> None:
    started = time.monotonic()
    response = post(api, SLEEPY, {"maxexectime": 1})
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["detail"]["kind"] == "timeout"
    # the limit is the one asked for (Colonies' maxexectime leaves the executor room to close)
    assert "limit of 1 s" in response.json()["detail"]["message"], response.text
    assert elapsed < 10


def test_unknown_function_is_404(api: str) -> None:
    response = post(api, unique("nope_"), {})
    assert response.status_code == 404, response.text
    assert response.json()["detail"]["kind"] == "not_found"


def test_no_executor_is_503_with_retry_after(stack: Any, tmp_path: Path) -> None:
    # Given a front end submitting to a type nobody serves
    with frontend(unique("nobody-"), tmp_path / "http.log") as url:
        health = httpx.get(f"{url}/healthz", timeout=10)
        httpx.get(f"{url}/convert", params={"celsius": 1}, timeout=60)  # warm the connection
        started = time.monotonic()
        response = httpx.get(f"{url}/convert", params={"celsius": 1}, timeout=60)
        elapsed = time.monotonic() - started
    # Then /healthz says so, and a call is answered 503 at once, nothing submitted
    assert health.json() == {"status": "no_executor", "executors": 0}
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    detail = response.json()["detail"]
    assert detail["kind"] == "no_executor"
    assert "processid" not in detail
    assert elapsed < 1.0


def test_colonies_unreachable_is_502_and_healthz_503(stack: Any, tmp_path: Path) -> None:
    import os

    env = {**os.environ, "COLONIES_SERVER_PORT": str(free_port())}  # nothing listens there
    with frontend("faas-executor", tmp_path / "http.log", env=env) as url:
        health = httpx.get(f"{url}/healthz", timeout=30)
        response = post(url, "convert", {"args": [1]})
    assert health.status_code == 503
    assert response.status_code == 502, response.text
    assert response.json()["detail"]["kind"] == "unreachable"
