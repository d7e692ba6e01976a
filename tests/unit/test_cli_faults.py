"""The CLI reads a failed Colonies request as the front end does (``colonies.faults``): a reply
it cannot read (here: a payload nested past the reader's depth limit, as a hostile process spec
makes one) is one line and exit 1, like a refusal; never a traceback."""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from .test_cli_calls import assert_one_line, run_cli

DEEP = b"[" * 100 + b"]" * 100  # the reader allows 64 levels


class DeepReplies(http.server.BaseHTTPRequestHandler):
    """Answers every RPC with a well-formed envelope around a payload nested too deep."""

    body = json.dumps(
        {"payloadtype": "x", "payload": base64.b64encode(DEEP).decode(), "error": False}
    ).encode()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), DeepReplies)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    "args",
    [
        ("call", "convert", "1"),
        ("functions",),
        ("functions", "history", "f"),
        ("logs", "a" * 64),
        ("result", "a" * 64),
        ("status",),
    ],
)
def test_an_unreadable_reply_is_exit_1_in_one_line(port: int, args: tuple[str, ...]) -> None:
    result = run_cli(*args, port=port)
    assert_one_line(result, 1)
    assert "reply to" in result.stderr and "cannot be read: " in result.stderr
    assert "nested deeper than 64 levels" in result.stderr
