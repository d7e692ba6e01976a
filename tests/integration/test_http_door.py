"""The front door on the real stack: pinned revisions, async calls and `result`, oversized
bodies, hung-up clients, and a function's lifecycle through the CLI."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from faas_live import deploy, executor, frontend, run_cli, unique
from faas_sandbox.colonies.backend import ColoniesBackend
from faas_sandbox.colonies.client import ColoniesClient

pytestmark = pytest.mark.colonies

SUFFIX = unique("")
VER = f"ver_{SUFFIX}"
ECHO = f"echo_{SUFFIX}"
SOURCES = {
    ECHO: f"def {ECHO}(x=None):\n    return x\n",
}


def version(n: int) -> str:
    return f"def {VER}():\n    return {n}\n"


@pytest.fixture(scope="module")
def live(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    for name, source in SOURCES.items():
        deploy(name, source)
    deploy(VER, version(1))
    work = tmp_path_factory.mktemp("door")
    etype = unique("faas-door-")
    with (
        executor(etype, work / "executor.log"),
        frontend(
            etype, work / "http.log", "--max-inflight", "2", "--max-body-bytes", "65536"
        ) as url,
    ):
        yield url, etype


def call(url: str, name: str, body: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
    return httpx.post(f"{url}/functions/{name}/call", json=body or {}, timeout=60, **kw)


def test_a_call_after_deploy_returned_runs_the_new_revision_and_says_which(
    live: tuple[str, str],
) -> None:
    url, _ = live
    first = call(url, VER).json()
    deploy(VER, version(2))
    second = call(url, VER).json()  # at once: no refresh delay
    assert first["output"] == [1] and second["output"] == [2]
    assert first["revision"]["fileid"] != second["revision"]["fileid"]
    detail = httpx.get(f"{url}/functions/{VER}", timeout=10).json()
    assert detail["current"]["fileid"] == second["revision"]["fileid"]
    assert [r["number"] for r in detail["revisions"]] == [1, 2]
    status = httpx.get(f"{url}/calls/{second['processid']}", timeout=10).json()
    assert status["revision"] == second["revision"]["fileid"]
    assert httpx.get(f"{url}/calls/{second['processid']}/logs", timeout=10).json()["logs"] == []
    printed = call(url, ECHO, {"args": ["x"]}).json()  # echo prints nothing: log via a failure
    failed = call(url, ECHO, {"args": [1, 2]})  # too many arguments -> runtime, logged
    assert failed.status_code == 422
    logs = httpx.get(f"{url}/calls/{failed.json()['detail']['processid']}/logs", timeout=10).json()[
        "logs"
    ]
    echo_revision = httpx.get(f"{url}/functions/{ECHO}", timeout=10).json()["current"]
    assert any(f"{ECHO}@{echo_revision['fileid'][:12]} failed" in line for line in logs), logs
    assert printed["revision"]["fileid"] == echo_revision["fileid"]


def test_async_call_then_status_and_cli_result(live: tuple[str, str]) -> None:
    url, _ = live
    accepted = call(url, ECHO, {"args": [{"a": [1, 2]}]}, params={"mode": "async"})
    assert accepted.status_code == 202, accepted.text
    processid = accepted.json()["processid"]
    assert accepted.json()["status_url"] == f"/calls/{processid}"
    result = run_cli("result", processid, "--wait", "--json", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["output"] == [{"a": [1, 2]}]
    status = httpx.get(f"{url}{accepted.json()['status_url']}", timeout=10).json()
    assert (status["state"], status["kind"], status["output"]) == (
        "successful",
        "ok",
        [{"a": [1, 2]}],
    )


def raw_post(url: str, headers: str, body: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(headers.encode() + body)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def listener_rss(url: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    for conn in psutil.net_connections(kind="tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return int(psutil.Process(conn.pid).memory_info().rss)
    raise AssertionError("front end process not found")


def test_oversized_bodies_are_413_unread_and_memory_stays_flat(live: tuple[str, str]) -> None:
    url, _ = live
    head = (
        f"POST /functions/{ECHO}/call HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: 20000000\r\n\r\n"
    )
    raw_post(url, head, b"[" * 65536)  # warm up
    before = listener_rss(url)
    answers: list[bytes] = []

    def flood() -> None:
        for _ in range(20):
            answers.append(raw_post(url, head, b"[" * 1_000_000))

    threads = [threading.Thread(target=flood) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    after = listener_rss(url)
    assert len(answers) == 200
    assert all(a.startswith(b"HTTP/1.1 413") for a in answers), answers[0][:200]
    # 200 bodies of 20 MB announced, 1 MB each sent: the front end grows by well under one
    print(f"front end RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB")
    assert after - before < 16 * 2**20


@pytest.mark.parametrize("path", ["/calls/%00/logs", "/calls/%00", "/calls/" + "a" * 5000])
def test_malformed_process_ids_are_400_without_database_text(
    live: tuple[str, str], path: str
) -> None:
    url, _ = live
    response = httpx.get(f"{url}{path}", timeout=10)
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail["kind"] == "spec" and "pq:" not in detail["message"]


def test_a_chunked_body_over_the_cap_is_413(live: tuple[str, str]) -> None:
    url, _ = live

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    response = httpx.post(
        f"{url}/functions/{ECHO}/call",
        content=chunks(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413
    assert response.json()["detail"]["kind"] == "too_large"


def test_clients_that_hang_up_free_their_slots_and_their_queued_calls_never_run(
    live: tuple[str, str], tmp_path: Path
) -> None:
    marker = unique("m")
    etype = unique("faas-gone-")
    # Given an executor type whose only executor was killed: it still counts as alive (it was
    # heard from moments ago), but nobody takes calls, so they stay waiting in the queue
    env = os.environ
    client = ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env.get("COLONIES_SERVER_TLS") == "true",
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )
    backend = ColoniesBackend(client, etype)
    with executor(etype, tmp_path / "executor.log") as proc:
        # ("registered" is logged before its first assign reaches the server: wait for that)
        deadline = time.monotonic() + 30
        while backend.alive_executors() == 0:
            assert time.monotonic() < deadline, "the executor was never heard from"
            time.sleep(0.05)
        proc.kill()
        proc.wait(10)
    with frontend(etype, tmp_path / "http.log", "--max-inflight", "2", "--maxwaittime", "1") as url:
        # When two clients call and hang up after 0.5 s
        for _ in range(2):
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{url}/functions/{ECHO}/call", json={"args": [marker]}, timeout=0.5)
        # Then the front end's two slots are free again at once: the next call is admitted
        # (and, nobody taking it, ends as "executors busy" after its 1 s maxwaittime)
        answer = call(url, ECHO, {"args": ["after"]})
        assert answer.status_code == 429, answer.text
        assert "every executor was busy" in answer.json()["detail"]["message"]
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    # the front end saw both clients go, and removed their calls from the queue
    assert f'faas_http_calls_total{{function="{ECHO}",kind="cancelled"}} 2.0' in metrics
    left = [
        p
        for state in (0, 1, 2, 3)
        for p in client.list_processes(state, 100, executortype=etype)
        if isinstance(p, dict) and marker in json.dumps(p.get("spec", {}))
    ]
    assert [(p["processid"], p["state"], p.get("errors")) for p in left] == []


def test_function_lifecycle_through_the_cli(live: tuple[str, str]) -> None:
    url, _ = live
    name = f"life_{SUFFIX}"
    deploy(name, f"def {name}():\n    return 'one'\n")
    deploy(name, f"def {name}():\n    return 'two'\n")
    history = run_cli("functions", "history", name, "--json")
    assert [r["number"] for r in json.loads(history.stdout)] == [1, 2], history.stderr
    shown = run_cli("functions", "show", name, "--revision", "1")
    assert "return 'one'" in shown.stdout, shown.stderr
    rolled = run_cli("functions", "rollback", name)
    assert rolled.returncode == 0, rolled.stderr
    assert call(url, name).json()["output"] == ["one"]
    assert len(json.loads(run_cli("functions", "history", name, "--json").stdout)) == 3
    removed = run_cli("functions", "rm", name)
    assert removed.returncode == 0, removed.stderr
    gone = call(url, name)
    assert gone.status_code == 404 and gone.json()["detail"]["kind"] == "not_found"
    missing = run_cli("functions", "show", name)
    assert missing.returncode == 1 and "no function" in missing.stderr
