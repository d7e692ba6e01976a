"""Bounded GETs against real loopback HTTP servers: slow, dripping, oversized, refusing."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from faas_sandbox.errors import CodeUnavailable, FunctionNotFound
from faas_sandbox.executor.s3fetch import bounded_get


@pytest.fixture
def server() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """Start a one-handler-per-connection loopback server; yields a URL factory."""
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def start(handler: Callable[[socket.socket], None]) -> str:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.settimeout(0.2)
        sockets.append(listener)

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except OSError:
                    continue
                sockets.append(conn)
                threading.Thread(target=_serve, args=(handler, conn), daemon=True).start()

        threading.Thread(target=loop, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}/bucket/key?X-Amz-Signature=1"

    yield start
    stop.set()
    for sock in sockets:
        sock.close()


def _serve(handler: Callable[[socket.socket], None], conn: socket.socket) -> None:
    try:
        conn.recv(65536)
        handler(conn)
    except OSError:
        pass


def ok(body: bytes) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    return handler


def drip(head: bytes, every: float, stop_after: int = 1000) -> Callable[[socket.socket], None]:
    def handler(conn: socket.socket) -> None:
        conn.sendall(head)
        for _ in range(stop_after):
            time.sleep(every)
            conn.sendall(b"#")

    return handler


def test_a_plain_get(server):
    assert (
        bounded_get(server(ok(b"def f(): pass\n")), deadline=time.monotonic() + 5, max_bytes=100)
        == b"def f(): pass\n"
    )


def test_a_dripping_body_ends_at_the_deadline_not_per_read(server):
    url = server(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", 0.05))
    started = time.monotonic()
    with pytest.raises(CodeUnavailable, match="deadline"):
        bounded_get(url, deadline=started + 0.6, max_bytes=10_000, read_s=10)
    assert time.monotonic() - started < 1.5


def test_dripped_headers_end_at_the_deadline(server):
    url = server(drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", 0.05))
    started = time.monotonic()
    with pytest.raises(CodeUnavailable, match="deadline"):
        bounded_get(url, deadline=started + 0.6, max_bytes=10_000, read_s=10)
    assert time.monotonic() - started < 1.5


def test_a_silent_server_ends_at_the_deadline(server):
    url = server(lambda conn: time.sleep(5))
    started = time.monotonic()
    with pytest.raises(CodeUnavailable, match="deadline"):
        bounded_get(url, deadline=started + 0.5, max_bytes=100, read_s=10)
    assert time.monotonic() - started < 1.5


def test_a_dead_port_is_unavailable_at_once():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CodeUnavailable, match=r"S3 127\.0\.0\.1"):
        bounded_get(
            f"http://127.0.0.1:{port}/b/k?x=1", deadline=time.monotonic() + 5, max_bytes=100
        )


def test_declared_or_actual_size_over_the_cap_is_refused(server):
    with pytest.raises(FunctionNotFound, match="1000 bytes, over the 100-byte limit"):
        bounded_get(server(ok(b"x" * 1000)), deadline=time.monotonic() + 5, max_bytes=100)

    def chunked(conn: socket.socket) -> None:
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3e8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n"
        )

    with pytest.raises(FunctionNotFound, match="over the 100-byte limit"):
        bounded_get(server(chunked), deadline=time.monotonic() + 5, max_bytes=100)


def test_errors_name_the_s3_code_never_the_body(server):
    def refuse(conn: socket.socket) -> None:
        body = b"<Error><Code>AccessDenied</Code><Message>SECRET</Message></Error>"
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    with pytest.raises(CodeUnavailable, match="AccessDenied") as info:
        bounded_get(server(refuse), deadline=time.monotonic() + 5, max_bytes=100)
    assert "SECRET" not in str(info.value)

    def missing(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    with pytest.raises(FunctionNotFound, match="gone from S3"):
        bounded_get(server(missing), deadline=time.monotonic() + 5, max_bytes=100)


def test_a_body_cut_short_is_unavailable(server):
    def cut(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        conn.close()

    with pytest.raises(CodeUnavailable, match="mid-body"):
        bounded_get(server(cut), deadline=time.monotonic() + 5, max_bytes=1000)
