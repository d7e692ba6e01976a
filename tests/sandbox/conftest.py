"""Shared fixtures for tests that fork real sandbox children, and the fork-hygiene guard.

Every test here gets :func:`fork_hygiene` (autouse): after the test, the pytest process
must have the same pid, no new fds except those a live Sandbox holds, no zombie
descendants, no direct child but forkers, and no sandbox child still running a call
(process names: ``faas-forker``, ``faas-spare`` idle spare, ``faas-call`` / ``faas-bare``
running). Module-scoped Sandboxes are fine: their forker and spares are expected.

Bombs only ever run under :data:`FAST` limits (wall 2 s, CPU 1 s, 128 MiB).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from faas_sandbox import Limits, Policy, Sandbox
from faas_sandbox.engine.sandbox import held_fds

FAST = Limits(
    wall_seconds=2.0, cpu_seconds=1, memory_mb=128, max_stdout_bytes=4096, max_result_bytes=65536
)
FAST_POLICY = Policy(name="engine-test", limits=FAST, prefork=1)
SETTLE_S = 5.0
_RUNNING = {"faas-call", "faas-bare"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.fork)


@pytest.fixture(scope="session", autouse=True)
def no_forker_outlives_the_session() -> Iterator[None]:
    """Set up before (so torn down after) every Sandbox fixture: all must be closed by then."""
    yield
    deadline = time.monotonic() + SETTLE_S
    while left := [
        (p.pid, name)
        for p in psutil.Process().children(recursive=True)
        if (name := _name(p)).startswith("faas-") or name == "<zombie>"
    ]:
        if time.monotonic() > deadline:
            pytest.fail(f"processes left after the session (a Sandbox not closed?): {left}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def engine() -> Iterator[Sandbox]:
    """One Sandbox under FAST_POLICY for every engine test that does not need its own."""
    with Sandbox(FAST_POLICY) as sb:
        yield sb


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Factory for Sandboxes with their own policy; all are closed after the test."""
    made: list[Sandbox] = []

    def make(policy: Policy | None = None, **changes: Any) -> Sandbox:
        if policy is None:
            policy = Policy(
                name="engine-test",
                limits=changes.pop("limits", FAST),
                prefork=changes.pop("prefork", 1),
                **changes,
            )
        sb = Sandbox(policy)
        sb.start()
        made.append(sb)
        return sb

    yield make
    for sb in made:
        sb.close()


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the fd of the listdir itself
    return out


def _name(proc: psutil.Process) -> str:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "<zombie>"
        return proc.name()
    except psutil.NoSuchProcess:
        return "<gone>"


def hygiene_problems(fds_before: dict[int, str], kids_before: set[int]) -> list[str]:
    me = psutil.Process()
    problems = []
    for kid in me.children():
        name = _name(kid)
        if name not in ("faas-forker", "<gone>") and kid.pid not in kids_before:
            problems.append(f"unexpected child {kid.pid} ({name})")
    for proc in me.children(recursive=True):
        name = _name(proc)
        if name == "<zombie>":
            problems.append(f"zombie {proc.pid}")
        elif name in _RUNNING:
            problems.append(f"sandbox child {proc.pid} still running ({name})")
    held = held_fds()
    for fd, target in _fds().items():
        if fds_before.get(fd) != target and fd not in held:
            problems.append(f"leaked fd {fd} -> {target}")
    return problems


@pytest.fixture(autouse=True)
def fork_hygiene() -> Iterator[None]:
    pid = os.getpid()
    fds_before = _fds()
    kids_before = {p.pid for p in psutil.Process().children()}
    yield
    assert os.getpid() == pid, "a forked child returned into pytest"
    deadline = time.monotonic() + SETTLE_S
    while problems := hygiene_problems(fds_before, kids_before):
        if time.monotonic() > deadline:
            pytest.fail("fork hygiene: " + "; ".join(problems))
        time.sleep(0.02)
