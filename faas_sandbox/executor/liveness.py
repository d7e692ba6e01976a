"""Whether the executor is actually taking work, and the HTTP port that says so.

Each worker thread beats (:meth:`Liveness.beat`) when it starts a long-poll (``assigning``)
and when it starts serving what it got (``serving``). The verdict (:meth:`Liveness.verdict`)
is healthy only when the executor is not stopping, Colonies answered the last assign, and
every worker beat recently enough for what it is doing: a long-poll lasts at most ``poll_s``,
a call at most ``call_s``. A worker that died, hangs, or was never restarted shows up as
stale, by index.

:func:`serve_http` serves ``GET /healthz`` (200 or 503, JSON body with the reasons) and
``GET /metrics`` (Prometheus text, default registry) on one loopback port, from daemon
threads; the handler reads only the path and never the body.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)


class Liveness:
    """Worker heartbeats and the resulting verdict; thread-safe (single atomic stores)."""

    def __init__(
        self,
        workers: int,
        *,
        poll_s: float,
        call_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.poll_s, self.call_s = poll_s, call_s
        now = clock()
        self._beats: list[tuple[str, float]] = [("starting", now)] * workers
        self._reachable = True
        self._stopping: str | None = None

    def beat(self, worker: int, state: str) -> None:
        self._beats[worker] = (state, self._clock())  # one list store: atomic under the GIL

    def reachable(self, up: bool) -> None:
        self._reachable = up

    def stopping(self, why: str) -> None:
        self._stopping = why

    def verdict(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details): details name every reason it is not."""
        now = self._clock()
        problems: list[str] = []
        if self._stopping:
            problems.append(f"stopping: {self._stopping}")
        if not self._reachable:
            problems.append("colonies unreachable")
        stale = []
        for index, (state, since) in enumerate(list(self._beats)):
            limit = self.call_s if state == "serving" else self.poll_s
            if now - since > limit:
                stale.append(f"worker {index} {state} for {now - since:.0f}s")
        problems.extend(stale)
        return not problems, {"ok": not problems, "problems": problems, "workers": len(self._beats)}


def serve_http(
    port: int, verdict: Callable[[], tuple[bool, dict[str, Any]]], addr: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """Serve /healthz and /metrics on ``addr:port`` from a daemon thread; returns the server."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok, details = verdict()
                self._send(200 if ok else 503, "application/json", json.dumps(details).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
            else:
                self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the executor's log

    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="faas-health", daemon=True).start()
    log.info("health on http://%s:%d/healthz, metrics on /metrics", addr, server.server_address[1])
    return server
