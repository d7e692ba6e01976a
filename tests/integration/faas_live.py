"""Helpers for tests that run our own executor and HTTP front end against the real stack.

Each test module gets a fresh executor type (``faas-it-xxxxxxxx``), so its calls can only be
taken by the executor it started, never by anyone else's running on the same colony. Every
process started here is stopped by its pid (SIGTERM, then SIGKILL) when the fixture ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
FAAS = str(REPO / ".venv" / "bin" / "faas-sandbox")
LABEL = "/faas"
CONVERT_SOURCE = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deploy(name: str, source: str) -> None:
    """Upload ``source`` as ColonyFS /faas/NAME the tutorial's way: pycolonies' own client and
    its ``upload_data``, as they are (what the executor must read is what pycolonies writes)."""
    from pycolonies import Colonies

    env = os.environ
    sdk = Colonies(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env.get("COLONIES_SERVER_TLS") == "true",
    )
    sdk.upload_data(
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
        filename=name,
        data=source.encode(),
        label=LABEL,
    )


def run_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAAS, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env if env is not None else os.environ),
    )


def stop(proc: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM our child by pid; SIGKILL it if it is still there after ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def executor(executor_type: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``faas-sandbox executor`` serving ``executor_type``, self-registered; ready on entry."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                FAAS,
                "executor",
                "--executor-type",
                executor_type,
                "--identity",
                "self",
                "--concurrency",
                "2",
                "--grace",
                "2",
                "--assign-timeout",
                "2",
            ],
            cwd=REPO,
            env=dict(os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while b"registered" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"executor did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop(proc)


@contextmanager
def frontend(
    executor_type: str, log_path: Path, *extra: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """``faas-sandbox http`` on a free port (uvicorn); yields its base URL once it answers."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [FAAS, "http", "--port", str(port), "--executor-type", executor_type, *extra],
            cwd=REPO,
            env=dict(env if env is not None else os.environ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=10)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"front end did not start:\n{log_path.read_text()[-3000:]}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        stop(proc)
