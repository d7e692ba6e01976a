"""Fixtures for tests against the real local stack (PostgreSQL, MinIO, Colonies server).

``stack`` (session): runs ``scripts/stack.sh up`` once per session (about a second when the
stack already runs; it also repairs a wiped database or a reaped member executor), then
creates a colony of the session's own (``test-<random>``, with fresh owner and member keys,
removed at the end), exports ``.dev/stack.env`` with that colony's name and keys into
``os.environ`` for the session, and yields a :class:`Stack`. If the stack cannot be started,
every test using it is skipped with the reason, and under ``CI=true`` that skip is a failure
(tests/conftest.py).

Why a colony per session: Colonies hands a process to any executor of the right type in the
right colony. The app that ``make run`` starts serves type ``faas-executor`` in colony ``dev``,
and the tutorial's spec must use exactly that type; in a colony of their own the tests never
race that app, nor another test session running at the same time. (The server's wake-up of a
waiting assign is per executor type across colonies, so a test that shares a type with the
app polls with a short ``--assign-timeout``: see test_tutorial_flow_end_to_end.)

``restore_stack`` (function): for fault drills that stop or restart services. It yields the
same ``Stack`` and runs ``scripts/stack.sh up`` afterwards, so later tests find everything
running again with the default configuration.

Mark tests that use them with ``@pytest.mark.colonies``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STACK_SH = REPO / "scripts" / "stack.sh"
UP_TIMEOUT_SECONDS = 1800  # the very first `up` may build Colonies and MinIO (~5 minutes)


class StackCommandError(RuntimeError):
    """Raised when a ``scripts/stack.sh`` command fails; the message holds its output."""


def run_stack_sh(
    *args: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/stack.sh ARGS``; raise StackCommandError with its output on failure."""
    done = subprocess.run(
        [str(STACK_SH), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else dict(env),
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise StackCommandError(
            f"scripts/stack.sh {' '.join(args)} failed (exit {done.returncode}):\n{output}"
        )
    return done


@dataclass(frozen=True)
class Stack:
    """The running stack: its client environment and service controls for fault drills."""

    env: Mapping[str, str]  # .dev/stack.env (COLONIES_*, AWS_S3_*) with the session's colony
    env_file: Path  # .dev/stack.env itself (colony `dev`, the one `make run` serves)

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


@contextmanager
def session_colony(dev_env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """A fresh colony with an approved member executor; removed afterwards.

    Yields ``dev_env`` with COLONIES_COLONY_NAME, COLONIES_COLONY_PRVKEY, COLONIES_PRVKEY and
    COLONIES_EXECUTOR_NAME replaced by the new colony's. ColonyFS files are per colony too.
    """
    from faas_sandbox.colonies.client import ColoniesClient, key_id, new_prvkey
    from faas_sandbox.errors import ColoniesError

    server_prvkey = dev_env["COLONIES_SERVER_PRVKEY"]
    colony_prvkey, member_prvkey = new_prvkey(), new_prvkey()
    name = f"test-{uuid.uuid4().hex[:10]}"
    member = dev_env.get("COLONIES_EXECUTOR_NAME", "dev-cli")
    client = ColoniesClient.connect(
        dev_env["COLONIES_SERVER_HOST"],
        int(dev_env["COLONIES_SERVER_PORT"]),
        dev_env.get("COLONIES_SERVER_TLS") == "true",
        name,
        server_prvkey,
    )
    client.rpc("addcolonymsg", colony={"colonyid": key_id(colony_prvkey), "name": name})
    try:
        client.add_executor(
            member,
            key_id(member_prvkey),
            dev_env.get("COLONIES_EXECUTOR_TYPE", "cli"),
            colony_prvkey,
        )
        client.approve_executor(member, colony_prvkey)
        yield {
            **dev_env,
            "COLONIES_COLONY_NAME": name,
            "COLONIES_COLONY_PRVKEY": colony_prvkey,
            "COLONIES_PRVKEY": member_prvkey,
            "COLONIES_EXECUTOR_NAME": member,
        }
    finally:
        try:
            client.rpc("removecolonymsg", colonyname=name)
        except ColoniesError as err:  # a leftover colony must not fail the session
            print(f"could not remove the session colony {name}: {err}")


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    try:
        run_stack_sh("up", timeout=UP_TIMEOUT_SECONDS)
    except (StackCommandError, subprocess.TimeoutExpired, OSError) as err:
        pytest.skip(
            f"the local stack could not be started: {err}\n"
            f"(try `scripts/stack.sh up` by hand; logs in ~/.cache/faas-sandbox/logs)"
        )
    env_file = Path(run_stack_sh("env").stdout.strip())
    dev_env: dict[str, str] = json.loads(run_stack_sh("env", "--json").stdout)
    with session_colony(dev_env) as env:
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
