"""Fixtures for tests against the real local stack (PostgreSQL, MinIO, Colonies server).

``stack`` (session): runs ``scripts/stack.sh up`` once per session (about a second when the
stack already runs; it also repairs a wiped database or a reaped member executor), exports
``.dev/stack.env`` into ``os.environ`` for the session, and yields a :class:`Stack`. If the
stack cannot be started, every test using it is skipped with the reason, and under
``CI=true`` that skip is a failure (tests/conftest.py).

``restore_stack`` (function): for fault drills that stop or restart services. It yields the
same ``Stack`` and runs ``scripts/stack.sh up`` afterwards, so later tests find everything
running again with the default configuration.

Mark tests that use them with ``@pytest.mark.colonies``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STACK_SH = REPO / "scripts" / "stack.sh"
UP_TIMEOUT_SECONDS = 1800  # the very first `up` may build Colonies and MinIO (~5 minutes)


class StackCommandError(RuntimeError):
    """Raised when a ``scripts/stack.sh`` command fails; the message holds its output."""


def run_stack_sh(*args: str, timeout: float = 300,
                 env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/stack.sh ARGS``; raise StackCommandError with its output on failure."""
    done = subprocess.run(
        [str(STACK_SH), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env=None if env is None else dict(env), check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise StackCommandError(f"scripts/stack.sh {' '.join(args)} failed "
                                f"(exit {done.returncode}):\n{output}")
    return done


@dataclass(frozen=True)
class Stack:
    """The running stack: its client environment and service controls for fault drills."""

    env: Mapping[str, str]  # everything in .dev/stack.env (COLONIES_*, AWS_S3_*)
    env_file: Path

    @property
    def colony_name(self) -> str:
        return self.env["COLONIES_COLONY_NAME"]

    @property
    def colonies_url(self) -> str:
        return f"http://{self.env['COLONIES_SERVER_HOST']}:{self.env['COLONIES_SERVER_PORT']}"

    def sh(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``scripts/stack.sh ARGS`` (raises StackCommandError on failure)."""
        return run_stack_sh(*args, timeout=timeout)

    def stop(self, service: str) -> None:
        """Stop one of: postgres, minio, colonies (executor, http)."""
        run_stack_sh("stop", service)

    def start(self, service: str) -> None:
        """Start one service and wait until it is healthy."""
        run_stack_sh("start", service)

    def restart(self, service: str) -> None:
        run_stack_sh("restart", service)

    def up(self) -> None:
        """Everything running again, bootstrap re-checked."""
        run_stack_sh("up", timeout=UP_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    try:
        run_stack_sh("up", timeout=UP_TIMEOUT_SECONDS)
    except (StackCommandError, subprocess.TimeoutExpired, OSError) as err:
        pytest.skip(f"the local stack could not be started: {err}\n"
                    f"(try `scripts/stack.sh up` by hand; logs in ~/.cache/faas-sandbox/logs)")
    env_file = Path(run_stack_sh("env").stdout.strip())
    env: dict[str, str] = json.loads(run_stack_sh("env", "--json").stdout)
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    try:
        yield Stack(env=env, env_file=env_file)
    finally:
        patch.undo()


@pytest.fixture
def restore_stack(stack: Stack) -> Iterator[Stack]:
    yield stack
    stack.up()
