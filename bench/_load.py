"""Closed-loop load generator and completion watcher for bench/bench_e2e.py.

:class:`Watcher` detects ends of calls with two WebSocket subscriptions (``subscribeprocessesmsg``
for SUCCESS and for FAILED of one executor type, protocol §4.8 / server ``realtime.go``): the
server pushes one frame per process entering that state, holding the process as read back from
the database after the close (its ``out`` included, because every benchmark executor registers
the function ``execute``). That costs no RPC per call, and it is the same for every executor.
A sweeper backs it up: a call still open ``sweep_after`` seconds after its submit is looked up
with ``get_process`` (counted as ``swept``; normally 0), so a dropped frame cannot lose a call.

:class:`LoadRun` keeps exactly ``window`` calls outstanding from ``submitters`` threads until
``total`` calls have ended, and records for each call submit -> end-state latency (the clock
starts before the submit RPC and stops when this process has parsed the end frame).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websocket

from faas_sandbox.colonies.client import ColoniesClient, sign
from faas_sandbox.kinds import ProcessState

EndCallback = Callable[[str, int, Any, float, str], None]  # pid, state, out|errors, when, how


class Watcher:
    """SUCCESS and FAILED frames of one executor type, delivered to a callback."""

    def __init__(
        self,
        host: str,
        port: int,
        tls: bool,
        colony: str,
        prvkey: str,
        executortype: str,
        timeout_s: int = 1800,
    ) -> None:
        self.url = f"{'wss' if tls else 'ws'}://{host}:{port}/pubsub"
        self.colony, self.prvkey, self.executortype = colony, prvkey, executortype
        self.timeout_s = timeout_s
        self.on_end: EndCallback | None = None
        self.frames = 0
        self.errors: list[str] = []
        self._sockets: list[websocket.WebSocket] = []
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._lock = threading.Lock()

    def start(self) -> None:
        for state in (ProcessState.SUCCESS, ProcessState.FAILED):
            ws = self._subscribe(state)
            thread = threading.Thread(
                target=self._read, args=(state, ws), daemon=True, name=f"watch-{state}"
            )
            thread.start()
            self._threads.append(thread)
        time.sleep(0.3)  # the server registers the listener asynchronously; no ack is sent

    def _subscribe(self, state: int) -> websocket.WebSocket:
        msg = {
            "colonyname": self.colony,
            "executortype": self.executortype,
            "state": state,
            "timeout": self.timeout_s,
            "msgtype": "subscribeprocessesmsg",
        }
        payload = base64.b64encode(json.dumps(msg).encode()).decode()
        ws = websocket.create_connection(self.url, timeout=10)
        ws.settimeout(None)
        ws.send(
            json.dumps(
                {
                    "payloadtype": msg["msgtype"],
                    "payload": payload,
                    "signature": sign(payload, self.prvkey),
                }
            )
        )
        with self._lock:
            self._sockets.append(ws)
        return ws

    def _read(self, state: int, ws: websocket.WebSocket | None) -> None:
        while not self._closing:
            if ws is None:  # the server dropped us (restart, timeout): subscribe again
                try:
                    ws = self._subscribe(state)
                except Exception:  # noqa: BLE001 - not back yet
                    time.sleep(0.5)
                    continue
            try:
                frame = ws.recv()
            except Exception as exc:  # noqa: BLE001 - closed by stop(), or by the server
                if not self._closing:
                    self.errors.append(f"subscription dropped, resubscribing: {exc!r}"[:200])
                ws = None
                continue
            when = time.perf_counter()
            if self._closing:
                return
            if not frame:  # the server's close frame
                ws = None
                continue
            self._frame(frame, when)

    def _frame(self, frame: str, when: float) -> None:
        try:
            envelope = json.loads(frame)
            body = json.loads(base64.b64decode(envelope["payload"]))
        except (ValueError, KeyError, TypeError) as exc:
            self.errors.append(f"bad frame: {exc!r}")
            return
        if envelope.get("error"):
            self.errors.append(f"server: {body}")
            return
        self.frames += 1
        if self.on_end is not None:
            state = int(body.get("state", -1))
            self.on_end(
                body.get("processid", ""),
                state,
                body.get("out") if state == ProcessState.SUCCESS else body.get("errors"),
                when,
                "ws",
            )

    def stop(self) -> None:
        self._closing = True
        with self._lock:
            sockets = list(self._sockets)
        for ws in sockets:
            try:
                ws.close(timeout=1)
            except Exception:  # noqa: BLE001 - best effort
                pass
        for thread in self._threads:
            thread.join(2.0)


@dataclass
class LoadResult:
    total: int
    ended: int = 0
    ok: int = 0  # SUCCESS with the expected output
    wrong: int = 0  # SUCCESS with another output
    failed: int = 0
    submit_errors: int = 0
    swept: int = 0
    lost: int = 0  # submitted, never ended within the timeout
    unsent: int = 0  # not submitted before the timeout (the loop stalled)
    latencies_ms: list[float] = field(default_factory=list)
    first_submit: float = 0.0
    last_end: float = 0.0
    samples: list[str] = field(default_factory=list)  # a few error texts / wrong outputs

    @property
    def seconds(self) -> float:
        return max(self.last_end - self.first_submit, 1e-9)

    @property
    def rate(self) -> float:
        return self.ended / self.seconds


class LoadRun:
    """``total`` calls, ``window`` outstanding at all times, from ``submitters`` threads."""

    def __init__(
        self,
        client: ColoniesClient,
        watcher: Watcher,
        spec: dict[str, Any],
        expected: list[Any],
        *,
        total: int,
        window: int,
        submitters: int,
        sweep_after: float = 5.0,
        timeout: float = 300.0,
    ) -> None:
        self.client, self.watcher, self.spec, self.expected = client, watcher, spec, expected
        self.total, self.window, self.submitters = total, window, submitters
        self.sweep_after, self.timeout = sweep_after, timeout
        self.result = LoadResult(total)
        self.pids: list[str] = []
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(window)
        self._issued = 0
        self._pending: dict[str, float] = {}
        self._early: dict[str, tuple[int, Any, float, str]] = {}
        self._seen: set[str] = set()
        self._done = threading.Event()

    def run(self) -> LoadResult:
        self.watcher.on_end = self._on_end
        self.result.first_submit = time.perf_counter()
        threads = [
            threading.Thread(target=self._submitter, daemon=True, name=f"submit-{i}")
            for i in range(self.submitters)
        ]
        sweeper = threading.Thread(target=self._sweeper, daemon=True, name="sweeper")
        for thread in [*threads, sweeper]:
            thread.start()
        if not self._done.wait(self.timeout):
            with self._lock:
                self.result.lost = len(self._pending)
                self.result.unsent = self.total - self._issued
        self._done.set()
        self.watcher.on_end = None
        return self.result

    # -- submitters ----------------------------------------------------------------------------
    def _submitter(self) -> None:
        while not self._done.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            with self._lock:
                if self._issued >= self.total:
                    self._slots.release()
                    return
                self._issued += 1
            started = time.perf_counter()
            try:
                pid = self.client.submit(self.spec)["processid"]
            except Exception as exc:  # noqa: BLE001 - counted, reported
                with self._lock:
                    self.result.submit_errors += 1
                    self._note(f"submit: {exc}")
                    self._finish(ended=False)
                continue
            with self._lock:
                self.pids.append(pid)
                early = self._early.pop(pid, None)
                if early is None:
                    self._pending[pid] = started
                else:
                    self._record(pid, started, *early)

    # -- ends ----------------------------------------------------------------------------------
    def _on_end(self, pid: str, state: int, out: Any, when: float, how: str) -> None:
        with self._lock:
            started = self._pending.pop(pid, None)
            if started is not None:
                self._record(pid, started, state, out, when, how)
            elif pid not in self._seen:
                self._early[pid] = (state, out, when, how)  # frame before the submit reply

    def _record(
        self, pid: str, started: float, state: int, out: Any, when: float, how: str
    ) -> None:
        """Count one ended call (lock held)."""
        self._seen.add(pid)
        result = self.result
        result.latencies_ms.append((when - started) * 1000)
        result.last_end = max(result.last_end, when)
        if how != "ws":
            result.swept += 1
        if state == ProcessState.SUCCESS and out == self.expected:
            result.ok += 1
        elif state == ProcessState.SUCCESS:
            result.wrong += 1
            self._note(f"{pid[:12]} out={out!r}")
        else:
            result.failed += 1
            self._note(f"{pid[:12]} state={state} errors={out!r}"[:300])
        self._finish()

    def _finish(self, ended: bool = True) -> None:
        if ended:
            self.result.ended += 1
        self._slots.release()
        if self.result.ended + self.result.submit_errors >= self.total:
            self._done.set()

    def _note(self, text: str) -> None:
        if len(self.result.samples) < 5:
            self.result.samples.append(text)

    def _sweeper(self) -> None:
        while not self._done.wait(0.5):
            now = time.perf_counter()
            with self._lock:
                old = [pid for pid, t in self._pending.items() if now - t > self.sweep_after]
            for pid in old:
                try:
                    process = self.client.get_process(pid)
                except Exception:  # noqa: BLE001 - try again next round
                    continue
                state = process.get("state")
                if state in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED):
                    self._on_end(
                        pid,
                        int(state),
                        process.get("out")
                        if state == ProcessState.SUCCESS
                        else process.get("errors"),
                        time.perf_counter(),
                        "sweep",
                    )
