"""The real :class:`~faas_sandbox.colonies.calls.Backend`: submit through Colonies, learn the end
state.

pycolonies' ``wait()`` subscribes to state 2 (SUCCESS) only, so on a failed call it blocks for
the whole timeout (protocol §4.8). We detect every end state instead, in one of two ways:

``ws`` (default)
    Two WebSocket subscriptions on ``/pubsub``, one for SUCCESS and one for FAILED, watched
    with one ``select()``. The server answers at once if the process is already there, and
    otherwise pushes the process JSON the moment it gets there, so the end is seen with no
    polling delay. A ``getprocessmsg`` every second is the safety net (CANCELLED, a dropped
    socket).
``poll``
    ``getprocessmsg`` with backoff: 5 ms doubling to at most 100 ms.

All calls here block; the HTTP front end runs them in worker threads.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import select
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import websocket

from ..errors import ColoniesRefused, ColoniesUnreachable
from ..kinds import ExecutorState, ProcessState
from ..names import FunctionName
from .calls import CallRequest, CallResult, poll_until_final
from .client import (
    DEFAULT_EXECUTOR_TYPE,
    FAILED_SETTLE_S,
    ColoniesClient,
    call_spec,
)
from .lifecycle import Revision, current, history
from .signing import request_body

log = logging.getLogger(__name__)

STRATEGIES = ("ws", "poll")
SAFETY_POLL_S = 1.0
CANCEL_POLL_S = 0.2  # how soon a cancelled wait notices
CONNECT_TIMEOUT_S = 5.0
# An executor long-polls assign (each attempt refreshes lastheardfromtime); one that has not
# been heard of for this long is taken for dead. Generous: a busy executor does not assign.
ALIVE_S = 120.0
_FRACTION = re.compile(r"(\.\d{1,6})\d*")


class ColoniesBackend:
    """Calls go to executors of ``executor_type`` in the client's colony, signed by its key."""

    def __init__(
        self,
        client: ColoniesClient,
        executor_type: str = DEFAULT_EXECUTOR_TYPE,
        strategy: str = "ws",
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown wait strategy {strategy!r}; expected one of {STRATEGIES}")
        self.client = client
        self.executor_type = executor_type
        self.strategy = strategy

    # -- Backend --------------------------------------------------------------------------------
    def submit(self, request: CallRequest) -> str:
        spec = self.spec(request)
        process = self.client.submit(spec)
        processid = str(process["processid"])
        log.debug("call %s: submitted %s", processid, request.function)
        return processid

    def spec(self, request: CallRequest) -> dict[str, Any]:
        """The function spec for a request: maxexectime, maxwaittime, maxretries always set."""
        spec = call_spec(
            request.function,
            request.args,
            request.kwargs,
            colony=self.client.colony,
            maxexectime=request.maxexectime,
            maxretries=request.maxretries,
            maxwaittime=request.maxwaittime,
            executortype=self.executor_type,
        )
        if request.tutorial:  # the tutorial's form: one number as text in kwargs.arg
            spec["kwargs"] = {"function": request.function, "arg": str(request.kwargs["arg"])}
        if request.pin is not None:
            spec["kwargs"]["revision"], spec["kwargs"]["sha256"] = request.pin
        spec["kwargs"]["wall"] = repr(float(request.wall_seconds))  # the exact limit
        return spec

    def wait(
        self, processid: str, timeout: float, cancel: threading.Event | None = None
    ) -> CallResult:
        if self.strategy == "poll":
            end = poll_until_final(lambda: self.get(processid), timeout, cancel=cancel)
        else:
            end = self._wait_ws(processid, timeout, cancel=cancel)
        # The server writes FAILED and the errors in two statements: a reader in between sees a
        # failure without its reason. Same settle bound as ColoniesClient.wait.
        settle = time.monotonic() + FAILED_SETTLE_S
        while end.reasonless and time.monotonic() < settle:
            time.sleep(0.02)
            end = self.get(processid)
        return end

    def get(self, processid: str) -> CallResult:
        return CallResult.from_process(self.client.get_process(processid))

    def remove(self, processid: str) -> None:
        self.client.rpc("removeprocessmsg", processid=processid, all=False)

    def logs(self, processid: str) -> list[str]:
        return [str(entry.get("message", "")) for entry in self.client.get_logs(processid, 500)]

    def ping(self) -> None:
        self.client.rpc("getcolonymsg", colonyname=self.client.colony)

    def alive_executors(self, now: datetime | None = None) -> int:
        """Approved executors of our type heard from (assign) within ``ALIVE_S``."""
        rows = self.client.rpc("getexecutorsmsg", colonyname=self.client.colony) or []
        now = now or datetime.now(UTC)
        alive = 0
        for row in rows:
            if (
                not isinstance(row, dict)
                or row.get("executortype") != self.executor_type
                or row.get("state") != ExecutorState.APPROVED
            ):
                continue
            heard = _parse_time(row.get("lastheardfromtime"))
            if heard is not None and (now - heard).total_seconds() < ALIVE_S:
                alive += 1
        return alive

    def functions(self) -> list[dict[str, Any]]:
        from .inventory import list_functions

        return [f.to_json() for f in list_functions(self.client)]

    def history(self, name: FunctionName) -> list[Revision]:
        return history(self.client, name)

    def current(self, name: FunctionName) -> Revision | None:
        return current(self.client, name)

    # -- WebSocket watch ----------------------------------------------------------------------
    def _subscribe(
        self, processid: str, state: ProcessState, timeout: float
    ) -> websocket.WebSocket:
        msg = {
            "processid": processid,
            "executortype": self.executor_type,
            "state": int(state),
            "timeout": max(1, math.ceil(timeout)),
            "colonyname": self.client.colony,
            "msgtype": "subscribeprocessmsg",
        }
        frame = request_body(msg, self.client.prvkey).decode()
        transport = self.client.transport
        failure = ""
        for _ in range(len(transport.nodes)):  # a node that fails: its next one (cluster)
            index, url = transport.pubsub_url()
            try:
                ws = websocket.create_connection(url, timeout=CONNECT_TIMEOUT_S)
            except (OSError, websocket.WebSocketException) as exc:
                failure = f"{url}: {exc}"
                transport.node_failed(index, str(exc)[:200])
                continue
            try:
                ws.send(frame)
            except (OSError, websocket.WebSocketException) as exc:
                ws.close()
                failure = f"{url}: {exc}"
                transport.node_failed(index, str(exc)[:200])
                continue
            return ws
        raise ColoniesUnreachable(failure)

    def _wait_ws(
        self,
        processid: str,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        cancel: threading.Event | None = None,
    ) -> CallResult:
        deadline = clock() + timeout
        sockets = [
            self._subscribe(processid, state, timeout + 1)
            for state in (ProcessState.SUCCESS, ProcessState.FAILED)
        ]
        tick = SAFETY_POLL_S if cancel is None else CANCEL_POLL_S
        last_get = clock()
        try:
            while True:
                left = deadline - clock()
                if left <= 0 or (cancel is not None and cancel.is_set()):
                    return self.get(processid)
                if not sockets:  # the server dropped both: fall back to polling
                    return poll_until_final(lambda: self.get(processid), left, cancel=cancel)
                readable, _, _ = select.select(
                    [ws.sock for ws in sockets if ws.sock], [], [], min(left, tick)
                )
                if not readable and clock() - last_get < SAFETY_POLL_S:
                    continue
                if not readable:
                    last_get = clock()
                    end = self.get(processid)
                    if end.final:
                        return end
                    continue
                for ws in [w for w in sockets if w.sock in readable]:
                    pushed = self._read_frame(ws, processid)
                    if pushed is None:
                        sockets.remove(ws)
                        ws.close()
                    elif pushed.final:
                        return pushed
        finally:
            for ws in sockets:
                ws.close()

    @staticmethod
    def _read_frame(ws: websocket.WebSocket, processid: str) -> CallResult | None:
        """The process a frame carries; None when the server closed the subscription."""
        try:
            frame = ws.recv()
        except (OSError, websocket.WebSocketException):
            return None
        if not frame:
            return None
        try:
            envelope = json.loads(frame)
            payload = json.loads(base64.b64decode(envelope["payload"]))
        except (ValueError, KeyError, TypeError):
            log.warning("call %s: unreadable subscription frame", processid)
            return None
        if envelope.get("payloadtype") == "error" or envelope.get("error"):
            message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
            raise ColoniesRefused(
                str(message), int(payload.get("status", 0) or 0) if isinstance(payload, dict) else 0
            )
        return CallResult.from_process(payload)


def _parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from Go (nanoseconds allowed); None for the zero time or garbage."""
    if not isinstance(value, str) or value.startswith("0001-"):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value[:64]).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def connect(
    host: str,
    port: int,
    tls: bool,
    colony: str,
    prvkey: str,
    executor_type: str = DEFAULT_EXECUTOR_TYPE,
    strategy: str = "ws",
) -> ColoniesBackend:
    """A backend on a fresh keep-alive client."""
    return ColoniesBackend(
        ColoniesClient.connect(host, port, tls, colony, prvkey), executor_type, strategy
    )
