"""Our transport's connection handling against a local HTTP stand-in: keep-alive connections the
server closed, replies cut short, read timeouts, and which of them are sent again."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from faas_sandbox.colonies import transport as transport_module
from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.errors import ColoniesUnreachable

KEY = "ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05"


class Handler(BaseHTTPRequestHandler):
    """Echoes the message type; ``state["mode"]`` makes it misbehave."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msg = json.loads(base64.b64decode(body["payload"]))
        state = self.server.state
        state["seen"].append(msg["msgtype"])
        state["peers"].add(self.client_address)
        data = json.dumps(
            {
                "payloadtype": msg["msgtype"],
                "error": False,
                "payload": base64.b64encode(json.dumps({"ok": True}).encode()).decode(),
            }
        ).encode()
        mode = state["mode"]
        if mode == "slow":
            state["release"].wait(10)  # longer than the read timeout the test sets
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) + (100 if mode == "cut" else 0)))
        self.end_headers()
        self.wfile.write(data)
        if mode in ("close-after", "cut"):
            self.close_connection = True  # no "Connection: close": the client cannot know


class Server(ThreadingHTTPServer):
    daemon_threads = True
    state: dict[str, Any]

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        self.state["closed"].release()  # one count per connection the server closed


def _new_server() -> Server:
    """A fake Colonies server on a free loopback port, with fresh shared state (not serving)."""
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.state = {
        "seen": [],
        "peers": set(),
        "mode": "",
        "closed": threading.Semaphore(0),
        "release": threading.Event(),
    }
    return httpd


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = _new_server()
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.state["release"].set()
    httpd.shutdown()
    httpd.server_close()


def client_of(server: Server) -> ColoniesClient:
    return ColoniesClient.connect("127.0.0.1", server.server_address[1], False, "dev", KEY)


def test_a_keep_alive_connection_the_server_closed_is_replaced_before_sending(server):
    """Even a submit (never sent twice) goes through: the closed connection is noticed before
    the request is written, not after."""
    client = client_of(server)
    server.state["mode"] = "close-after"
    assert client.rpc("getprocessmsg", processid="p") == {"ok": True}
    assert server.state["closed"].acquire(timeout=10)  # the server has closed it now
    server.state["mode"] = ""
    assert client.submit({"maxexectime": 5, "conditions": {}}) == {"ok": True}
    assert server.state["seen"] == ["getprocessmsg", "submitfuncspecmsg"]
    assert len(server.state["peers"]) == 2


def test_a_body_cut_short_is_unreachable_and_not_sent_again(server):
    client = client_of(server)
    server.state["mode"] = "cut"
    with pytest.raises(ColoniesUnreachable, match="reply cut short"):
        client.get_process("p")
    assert server.state["seen"] == ["getprocessmsg"]
    server.state["mode"] = ""
    assert client.get_process("p") == {"ok": True}  # a new connection for the next request


def test_a_read_timeout_is_unreachable_and_not_sent_again(server, monkeypatch):
    monkeypatch.setattr(transport_module, "READ_TIMEOUT_S", 0.3)
    client = client_of(server)
    server.state["mode"] = "slow"
    with pytest.raises(ColoniesUnreachable, match="read timed out"):
        client.get_process("p")
    assert server.state["seen"] == ["getprocessmsg"]


def test_an_unknown_host_is_unreachable_never_sent():
    client = ColoniesClient.connect("no-such-host.invalid", 50080, False, "dev", KEY)
    with pytest.raises(ColoniesUnreachable, match=r"no-such-host\.invalid"):
        client.get_process("p")


def test_connections_of_finished_threads_are_closed(server):
    """A thread's connection goes with the thread (no socket left open, no ResourceWarning)."""
    client = client_of(server)
    thread = threading.Thread(target=client.get_process, args=("p",))
    thread.start()
    thread.join()
    assert server.state["closed"].acquire(timeout=10)
    assert len(server.state["peers"]) == 1


def test_a_refused_submit_is_unreachable():
    """Refused: the request never left (a single node gets one more try, a submit too)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ColoniesClient.connect("127.0.0.1", port, False, "dev", KEY)
    with pytest.raises(ColoniesUnreachable, match="connection refused"):
        client.submit({"maxexectime": 5, "conditions": {}})


TLS_DIR = Path(__file__).parent / "tls"  # a self-signed certificate for 127.0.0.1 (test only)


@pytest.fixture
def tls_server() -> Iterator[Server]:
    httpd = _new_server()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_DIR / "localhost.crt", TLS_DIR / "localhost.key")
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_tls_verifies_the_server_against_the_trusted_cas(tls_server, monkeypatch):
    """COLONIES_SERVER_TLS: the default context, so SSL_CERT_FILE adds a private CA."""
    port = tls_server.server_address[1]
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS_DIR / "localhost.crt"))
    client = ColoniesClient.connect("127.0.0.1", port, True, "dev", KEY)
    assert client.transport.url == f"https://127.0.0.1:{port}/api"
    for _ in range(3):
        assert client.get_process("p") == {"ok": True}
    assert len(tls_server.state["peers"]) == 1  # keep-alive over TLS too

    monkeypatch.delenv("SSL_CERT_FILE")
    untrusting = ColoniesClient.connect("127.0.0.1", port, True, "dev", KEY)
    with pytest.raises(ColoniesUnreachable, match="certificate verify failed"):
        untrusting.submit({"maxexectime": 5, "conditions": {}})
    assert tls_server.state["seen"] == ["getprocessmsg"] * 3  # the submit never left
