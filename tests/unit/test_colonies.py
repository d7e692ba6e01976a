"""The Colonies transport against a small local HTTP stand-in (threads, no fork, no server)."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from coincurve import PublicKey

from faas_sandbox.colonies.client import (
    ColoniesClient,
    backend_down,
    call_spec,
)
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable

KNOWN_KEY = "ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05"
KNOWN_ID = "3fc05cf3df4b494e95d6a3d297a34f19938f7daa7422ab0d4f794454133341ac"


def recover_id(payload: str, signature: str) -> str:
    """What the server does with a signature (protocol §2.3)."""
    digest = hashlib.sha3_256(payload.encode()).digest()
    public = PublicKey.from_signature_and_message(bytes.fromhex(signature), digest, hasher=None)
    return hashlib.sha3_256(public.format(compressed=False).hex().encode()).hexdigest()


class Stand_in(BaseHTTPRequestHandler):  # noqa: N801
    protocol_version = "HTTP/1.1"  # keep-alive
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msg = json.loads(base64.b64decode(body["payload"]))
        state = self.server.state  # type: ignore[attr-defined]
        state["peers"].add(self.client_address)
        state["callers"].append(recover_id(body["payload"], body["signature"]))
        kind = msg["msgtype"]
        if kind == "assignprocessmsg" and msg["timeout"] != 7:
            if msg["timeout"] == 99:
                state["long_poll"].set()
                time.sleep(30)  # a long-poll that only an abort ends
            self._reply(
                404, "error", {"status": 404, "message": "No process available for assignment"}
            )
        elif kind == "closesuccessfulmsg":
            self._reply(403, "error", {"status": 403, "message": "process is not assigned"})
        elif kind == "getprocessmsg" and msg["processid"] == "proxy":
            self._raw(502, b"<html>bad gateway</html>")
        elif kind == "getprocessmsg" and msg["processid"] == "empty":
            self._raw(200, b"")
        elif kind == "getprocessmsg" and msg["processid"] == "bare":
            state["bare"] = state.get("bare", 0) + 1  # errors written by a later statement
            errors = ["crash: killed"] if state["bare"] > 2 else []
            self._reply(200, kind, {"processid": "bare", "state": 3, "errors": errors})
        elif kind == "getprocessmsg" and msg["processid"] == "dbdown":
            self._reply(
                400,
                "error",
                {"status": 400, "message": "dial tcp 127.0.0.1:55432: connect: connection refused"},
            )
        elif kind == "assignprocessmsg" and msg["timeout"] == 7:
            self._reply(
                403, "error", {"status": 403, "message": "pq: the database system is shutting down"}
            )
        else:
            self._reply(200, kind, {"echo": msg})

    def _reply(self, status: int, payloadtype: str, payload: object) -> None:
        data = json.dumps(
            {
                "payloadtype": payloadtype,
                "error": status != 200,
                "payload": base64.b64encode(json.dumps(payload).encode()).decode(),
            }
        )
        self._raw(status, data.encode())

    def _raw(self, status: int, data: bytes) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (an aborted long-poll answered 30 s later)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Stand_in)
    httpd.daemon_threads = True
    httpd.state = {
        "peers": set(),
        "callers": [],  # type: ignore[attr-defined]
        "long_poll": threading.Event(),
    }
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client(server):
    return ColoniesClient.connect("127.0.0.1", server.server_address[1], False, "dev", KNOWN_KEY)


def test_requests_are_signed_by_the_key_and_share_one_connection(client, server):
    for _ in range(5):
        assert client.rpc("getcolonymsg", colonyname="dev") == {
            "echo": {"msgtype": "getcolonymsg", "colonyname": "dev"}
        }
    assert server.state["callers"] == [KNOWN_ID] * 5
    assert len(server.state["peers"]) == 1  # keep-alive


def test_each_thread_has_its_own_session(client, server):
    threads = [threading.Thread(target=client.rpc, args=("getcolonymsg",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(server.state["peers"]) == 3


def test_no_process_available_means_idle(client):
    assert client.assign(1) is None


def test_a_server_error_is_refused_with_its_message_and_status(client):
    with pytest.raises(ColoniesRefused, match="process is not assigned") as info:
        client.close("p", [1])
    assert info.value.status == 403


def test_a_non_colonies_5xx_is_unreachable_and_an_empty_200_is_refused(client):
    with pytest.raises(ColoniesUnreachable, match="HTTP 502"):
        client.get_process("proxy")
    with pytest.raises(ColoniesRefused, match="HTTP 200"):
        client.get_process("empty")


def test_the_servers_database_errors_are_unreachable_not_refusals(client):
    """While PostgreSQL restarts, Colonies answers 400/403 with the driver's error text; those
    must be retried, never taken as a verdict ("removed", "already closed")."""
    with pytest.raises(ColoniesUnreachable, match="cannot reach its database: dial tcp"):
        client.get_process("dbdown")
    with pytest.raises(ColoniesUnreachable, match="database system is shutting down"):
        client.assign(7)


@pytest.mark.parametrize(
    ("message", "down"),
    [
        ("dial tcp 127.0.0.1:55432: connect: connection refused", True),
        (
            "dial unix /var/lib/postgresql/faas-sandbox/.s.PGSQL.55432: connect: no such file or "
            "directory",
            True,
        ),  # the dev stack's namespaced server, while PostgreSQL restarts
        ("read tcp 127.0.0.1:37576->127.0.0.1:55432: read: connection reset by peer", True),
        ("pq: terminating connection due to administrator command", True),
        ("pq: the database system is starting up", True),
        ("driver: bad connection", True),
        ("EOF", True),
        ("Access denied, not a member of Colony with name <dev>", False),
        ("Failed to close process as successful, process is not assigned", False),
        ("Tried to set failed process as failed", False),
        ("No process available for assignment", False),
    ],
)
def test_backend_down_tells_database_errors_from_verdicts(message, down):
    assert backend_down(message) is down


def test_wait_does_not_return_a_failure_before_its_reason_is_written(client, server):
    """Colonies marks a process FAILED, then writes its errors in another statement."""
    assert client.wait("bare", timeout=5)["errors"] == ["crash: killed"]
    assert server.state["bare"] == 3


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    client = ColoniesClient.connect("127.0.0.1", port, False, "dev", KNOWN_KEY)
    with pytest.raises(ColoniesUnreachable, match=r"127\.0\.0\.1"):
        client.get_process("x")


def _long_poll_in_thread(client: ColoniesClient) -> tuple[threading.Thread, list[BaseException]]:
    """A long assign in a thread of its own; what it raises lands in the returned list."""
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            client.assign(99)
        except BaseException as exc:  # noqa: BLE001 - recorded and checked by the test
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    return thread, errors


def test_abort_ends_a_long_poll_at_once(client, server):
    thread, errors = _long_poll_in_thread(client)
    assert server.state["long_poll"].wait(10)  # the server holds the request now
    started = time.monotonic()
    client.abort_assigns()
    thread.join(5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert isinstance(errors[0], ColoniesUnreachable)


def test_an_aborted_long_poll_is_no_node_failure(server):
    """At shutdown the ended long-poll must not move a cluster client to another node."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        spare = s.getsockname()[1]
    hosts = f"127.0.0.1:{server.server_address[1]}, 127.0.0.1:{spare}"
    client = ColoniesClient.connect(hosts, 50080, False, "dev", KNOWN_KEY)
    thread, errors = _long_poll_in_thread(client)
    assert server.state["long_poll"].wait(10)
    client.abort_assigns()
    thread.join(5)
    assert isinstance(errors[0], ColoniesUnreachable)
    assert client.transport.nodes.switches == 0
    assert client.get_process("x")["echo"]["processid"] == "x"  # the same node, reconnected


@pytest.mark.parametrize(
    ("maxexectime", "maxretries"), [(0, 0), (-2, 0), (5, -2), (True, 0), (1.5, 0)]
)
def test_call_spec_refuses_the_zero_trap_and_bad_limits(maxexectime, maxretries):
    with pytest.raises(ValueError, match="must be"):
        call_spec("f", colony="dev", maxexectime=maxexectime, maxretries=maxretries)


def test_call_spec_sets_every_limit_explicitly():
    spec = call_spec("convert", [21.0], colony="dev", maxexectime=10, maxretries=0)
    assert spec["maxexectime"] == 10 and spec["maxretries"] == 0 and spec["maxwaittime"] == -1
    assert spec["funcname"] == "execute"
    assert spec["kwargs"] == {"function": "convert", "args": "[21.0]"}
    assert spec["conditions"]["executortype"] == "faas-executor"


def test_submit_refuses_a_spec_without_maxexectime(client):
    with pytest.raises(ValueError, match="maxexectime 0"):
        client.submit({"funcname": "execute", "conditions": {"executortype": "t"}})
