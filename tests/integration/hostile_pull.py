"""What a hostile colony member can put in front of an executor, for tests and
bench/hostile_soak.py: raw submits with specs no client library would write, ColonyFS metadata
naming stores of the member's choosing, a loopback S3 stand-in that drips its answer, and texts with
NUL.

Needs the stack's client variables in ``os.environ`` (the ``stack`` fixture sets them).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

import harness
from faas_sandbox.colonies.client import ColoniesClient, sign
from faas_sandbox.colonies.reply import decode_reply, read_capped
from faas_sandbox.errors import ReplyUnreadable

INLINE_CONVERT = "def convert(celsius):\n    return (celsius * 9 / 5) + 32\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deep_spec_payload(
    executortype: str, depth: int, *, where: str = "args", maxexectime: int = 30
) -> bytes:
    """A submitfuncspecmsg payload whose spec nests ``depth`` deep: ``spec.args`` as a real
    JSON array (``where="args"``) or ``kwargs.args`` as JSON text (``"kwargs"``)."""
    deep = "[" * depth + "]" * depth
    kwargs = {"function": "convert"}
    args = "@DEEP@" if where == "args" else []
    if where == "kwargs":
        kwargs["args"] = deep
    spec = {
        "nodename": "execute",
        "funcname": "execute",
        "args": args,
        "kwargs": kwargs,
        "priority": 0,
        "maxwaittime": -1,
        "maxexectime": maxexectime,
        "maxretries": 0,
        "label": "",
        "env": {},
        "conditions": {
            "colonyname": os.environ["COLONIES_COLONY_NAME"],
            "executortype": executortype,
        },
    }
    text = json.dumps({"msgtype": "submitfuncspecmsg", "spec": spec})
    return text.replace('"@DEEP@"', deep).encode()


def submit_deep(
    member: ColoniesClient,
    executortype: str,
    depth: int = 2000,
    where: str = "args",
    maxexectime: int = 30,
) -> str:
    """Submit a deep spec raw; the reply (the process, as deep) is read the bounded way."""
    return submit_payload(
        member, deep_spec_payload(executortype, depth, where=where, maxexectime=maxexectime)
    )


def submit_payload(member: ColoniesClient, payload: bytes) -> str:
    """Submit a raw submitfuncspecmsg payload; the process id, read from the reply the
    bounded way (so a reply too deep or too large still gives it)."""
    text = base64.b64encode(payload).decode()
    body = json.dumps(
        {
            "payloadtype": "submitfuncspecmsg",
            "payload": text,
            "signature": sign(text, member.prvkey),
        }
    )
    reply = requests.post(member.transport.url, data=body, timeout=60)
    content, truncated = read_capped([reply.content])
    try:
        return str(decode_reply(content, reply.status_code, truncated)["processid"])
    except ReplyUnreadable as exc:
        return exc.fields["processid"]


def get_deep(member: ColoniesClient, pid: str) -> dict[str, Any]:
    """get_process for a process this test made deeper than the executor's limits: the
    bounded reading refuses it, so the test (trusting its own submission) reads it with a
    raised recursion limit."""
    try:
        return member.get_process(pid)
    except ReplyUnreadable as exc:
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 20_000))
        try:
            return dict(json.loads(exc.raw))
        finally:
            sys.setrecursionlimit(old)


def wait_deep(member: ColoniesClient, pids: list[str], timeout: float) -> dict[str, Any]:
    """pid -> process once each has ended (with its errors), or the last seen at ``timeout``."""
    deadline = time.monotonic() + timeout
    seen: dict[str, Any] = {}
    while True:
        for pid in pids:
            seen[pid] = get_deep(member, pid)
        if (
            all(p["state"] == 2 or (p["state"] == 3 and p["errors"]) for p in seen.values())
            or time.monotonic() > deadline
        ):
            return seen
        time.sleep(0.1)


def inline_spec(
    source: str, function: str, args: list[Any], *, executortype: str, maxexectime: int = 10
) -> dict[str, Any]:
    """pycolonies ``func_spec(func=...)``'s form: base64 code in env.code (no code store)."""
    code = base64.b64encode(source.encode()).decode()
    return harness.raw_spec(
        {},
        executortype=executortype,
        funcname=function,
        args=args,
        maxexectime=maxexectime,
        env={"code": code},
    )


def add_meta(
    member: ColoniesClient,
    name: str,
    *,
    server: str,
    port: int,
    bucket: str,
    obj: str,
    checksum: str,
    tls: bool = False,
    size: int = 100,
    region: str = "",
) -> dict[str, Any]:
    """ColonyFS /faas/NAME metadata as any member may write it (addfilemsg, no S3 needed)."""
    return member.add_file(
        {
            "fileid": "",
            "colonyname": member.colony,
            "label": harness.LABEL,
            "name": name,
            "size": size,
            "sequencenr": 1,
            "checksum": checksum,
            "checksumalg": "SHA256",
            "ref": {
                "protocol": "s3",
                "s3object": {
                    "server": server,
                    "port": port,
                    "tls": tls,
                    "accesskey": "",
                    "secretkey": "",
                    "region": region,
                    "encryptionkey": "",
                    "encryptionalg": "",
                    "object": obj,
                    "bucket": bucket,
                },
            },
        }
    )


class LoopbackStore:
    """A loopback HTTP server standing in for S3: every GET is counted; ``drip_s`` > 0 sends
    the status line and headers, then one body byte every ``drip_s`` seconds (forever,
    or until the client goes); otherwise, or for an object key in ``instant_keys``, it
    answers ``body`` at once."""

    def __init__(
        self,
        body: bytes = b"STOLEN = 1\ndef convert(x):\n    return 'STOLEN'\n",
        drip_s: float = 0.0,
        instant_keys: set[str] | None = None,
    ) -> None:
        self.body, self.drip_s = body, drip_s
        self.instant_keys = instant_keys or set()
        self.requests = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.open_connections = 0
        threading.Thread(target=self._loop, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_connections += 1
        try:
            request = conn.recv(65536)
            with self._lock:
                self.requests += 1
            path = request.split(b" ", 2)[1].split(b"?")[0] if b" " in request else b""
            key = path.rsplit(b"/", 1)[-1].decode(errors="replace")
            if self.drip_s <= 0 or key in self.instant_keys:
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close"
                    b"\r\n\r\n" % len(self.body) + self.body
                )
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not self._stop.wait(self.drip_s):
                conn.sendall(b"#")
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open_connections -= 1

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@contextlib.contextmanager
def executor(
    log_path: Path,
    executortype: str,
    *flags: str,
    concurrency: int = 2,
    env: dict[str, str] | None = None,
) -> Iterator[harness.Executor]:
    """A ``faas-sandbox executor`` subprocess with ``env`` overrides, stopped afterwards."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        ex = harness.Executor(log_path, executortype, *flags, concurrency=concurrency)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    try:
        yield ex
    finally:
        ex.stop()


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_one(member: ColoniesClient, pid: str, timeout: float) -> tuple[dict[str, Any], float]:
    """(process, seconds until it ended) for one process."""
    started = time.monotonic()
    process = harness.wait_ended(member, [pid], timeout)[pid]
    return process, time.monotonic() - started


def wait_huge(member: ColoniesClient, pid: str, timeout: float) -> dict[str, Any]:
    """The state and errors of a process too large to read whole, once it has ended: read
    from the reply with the size cap lifted (the test trusts its own submission)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            process = member.get_process(pid)
        except ReplyUnreadable:
            text = base64.b64encode(
                json.dumps({"msgtype": "getprocessmsg", "processid": pid}).encode()
            ).decode()
            body = json.dumps(
                {
                    "payloadtype": "getprocessmsg",
                    "payload": text,
                    "signature": sign(text, member.prvkey),
                }
            )
            reply = requests.post(member.transport.url, data=body, timeout=60)
            process = json.loads(base64.b64decode(reply.json()["payload"]))
        if (
            (process["state"] == 3 and process["errors"])
            or process["state"] == 2
            or time.monotonic() > deadline
        ):
            return {"state": process["state"], "errors": process["errors"]}
        time.sleep(0.5)
