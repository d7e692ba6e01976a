"""The loopback forward into the Colonies server's network namespace (scripts/devstack/forward.py):
bytes both ways unchanged, flow control, half-closes, replies long after the request (the assign
long-poll, WebSocket events), refused upstreams, and -- as root -- a real namespace whose
listener the root namespace cannot reach except through the forward."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from devstack import setns  # noqa: E402

Handler = Callable[[socket.socket], None]


def echo(conn: socket.socket) -> None:
    """Echo until the client half-closes, then say so (after its EOF) and close."""
    while data := conn.recv(65536):
        conn.sendall(data)
    conn.sendall(b"<eof seen>")


class Upstream:
    """A listener (in ``netns`` when given) serving each connection with ``handler``."""

    def __init__(self, handler: Handler, netns: str | None = None) -> None:
        self.sock = setns.tcp_socket(netns)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            self.handler(conn)

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def forward() -> Iterator[Callable[..., int]]:
    """start(upstream_port, netns=None) -> the port the forward listens on (127.0.0.1)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(upstream_port: int, netns: str | None = None) -> int:
        port = free_port()
        argv = [
            sys.executable,
            "-m",
            "devstack.forward",
            "--listen",
            f"127.0.0.1:{port}",
            "--to",
            f"127.0.0.1:{upstream_port}",
        ] + (["--netns", netns] if netns else [])
        proc = subprocess.Popen(argv, cwd=REPO / "scripts", stdout=subprocess.PIPE)
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"forward: ")  # printed once it listens
        return port

    yield start
    for proc in procs:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert proc.stdout is not None
        proc.stdout.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=20)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def test_large_payloads_pass_both_ways_and_a_half_close_is_passed_on(forward) -> None:
    upstream = Upstream(echo)
    port = forward(upstream.port)
    payload = os.urandom(8 << 20)  # far beyond the forward's 1 MiB high-water mark
    with connect(port) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the upstream sees EOF and still answers after it

        sender = threading.Thread(target=send)
        sender.start()
        got = read_all(sock)
        sender.join()
    assert got == payload + b"<eof seen>"
    upstream.close()


def test_a_reply_that_comes_much_later_arrives(forward) -> None:
    """The assign long-poll and WebSocket events: the request, then nothing until an event."""
    event = threading.Event()

    def long_poll(conn: socket.socket) -> None:
        request = conn.recv(100)
        assert event.wait(30)
        conn.sendall(b"assigned:" + request)

    upstream = Upstream(long_poll)
    port = forward(upstream.port)
    with connect(port) as sock:
        sock.sendall(b"assign")
        threading.Timer(2.0, event.set).start()  # the event comes while the client waits
        assert sock.recv(100) == b"assigned:assign"
    upstream.close()


def test_a_refused_upstream_resets_the_client_and_the_forward_keeps_serving(forward) -> None:
    dead = free_port()  # nothing listens there
    port = forward(dead)

    def ask(sock: socket.socket) -> bytes:
        sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
        return sock.recv(100)

    for _ in range(3):
        with connect(port) as sock, pytest.raises((ConnectionResetError, BrokenPipeError)):
            ask(sock)  # a reset, not an orderly close (which would return b"")


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"fwdtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_a_listener_in_a_namespace_is_reached_only_through_the_forward(
    forward, namespace: str
) -> None:
    upstream = Upstream(echo, netns=namespace)
    with pytest.raises(ConnectionRefusedError):  # the same address, seen from out here
        socket.create_connection(("127.0.0.1", upstream.port), timeout=5)
    port = forward(upstream.port, netns=namespace)
    with connect(port) as sock:
        sock.sendall(b"hello")
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == b"hello<eof seen>"
    upstream.close()
