"""Node loss in a 3-node Colonies cluster on loopback (its own PostgreSQL, ports and keys; the
shared stack is never touched): kill -9 the node an executor talks to while it drains a queue.

The cluster (scripts/devstack/cluster.py) is started and torn down here; the session's
``stack`` fixture only guarantees the binaries (Colonies, PostgreSQL) exist.
"""

from __future__ import annotations

import base64
import sys
import time
from pathlib import Path

import pytest

import harness
from faas_sandbox.colonies.client import ColoniesClient, call_spec
from faas_sandbox.errors import ColoniesUnreachable
from faas_sandbox.kinds import ProcessState

sys.path.insert(0, str(harness.REPO / "scripts"))
from devstack.cluster import Cluster

pytestmark = pytest.mark.colonies

CALLS = 300
SOURCE = "def triple(x):\n    return 3 * x\n"


@pytest.fixture
def cluster(stack):
    with Cluster(size=3) as running:
        yield running


def _spec(i: int, colony: str, executor_type: str) -> dict:
    spec = call_spec(
        "triple", colony=colony, maxexectime=5, maxretries=3, executortype=executor_type
    )
    spec.update(
        funcname="triple",
        nodename="triple",
        args=[i],
        kwargs={},
        env={"code": base64.b64encode(SOURCE.encode()).decode()},
    )
    return spec


def _counts(client: ColoniesClient) -> dict:
    deadline = time.monotonic() + 30
    while True:
        try:
            return client.rpc("getcolonystatsmsg", colonyname=client.colony)
        except ColoniesUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # the client has moved to the next node; ask again


def test_kill_9_the_node_the_executor_uses_mid_drain(cluster, monkeypatch, tmp_path: Path):
    """300 queued calls (maxexectime 5, maxretries 3); node 1, which the executor uses, is
    killed after a third of them: none lost, none failed, and the executor says it switched."""
    env = cluster.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    member = ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        50080,
        False,
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )
    executor_type = harness.unique("cluster-")
    pids = [
        str(member.submit(_spec(i, member.colony, executor_type))["processid"])
        for i in range(CALLS)
    ]
    ex = harness.Executor(tmp_path / "executor.log", executor_type, concurrency=2)
    try:
        harness.wait_until(
            "a third of the calls done",
            lambda: _counts(member)["successfulprocesses"] >= CALLS // 3,
            timeout=120,
            poll=0.02,
        )
        assert "switching to" not in ex.log()  # so far it talked to node 1 only
        killed_at = time.monotonic()
        cluster.kill(0)
        done_at_kill = _counts(member)["successfulprocesses"]
        ended = harness.wait_ended(member, pids, timeout=120, poll=0.5)
        healed_s = time.monotonic() - killed_at
        assert ex.alive
        log = ex.log()
    finally:
        status = ex.stop()

    states = [p.get("state") for p in ended.values()]
    outputs = {pid: p.get("out") for pid, p in ended.items()}
    retries = sum(int(p.get("retries") or 0) for p in ended.values())
    print(
        f"\nnode 1 killed with {done_at_kill}/{CALLS} done; all {CALLS} ended "
        f"{healed_s:.1f}s later; retries {retries}; "
        f"switch lines: {log.count('switching to')}"
    )
    print("\n".join(line for line in log.splitlines() if "WARNING" in line or "ERROR" in line))
    assert states.count(ProcessState.FAILED) == 0, [
        p.get("errors") for p in ended.values() if p["state"] == 3
    ]
    assert states.count(ProcessState.SUCCESS) == CALLS  # none lost
    assert all(outputs[pid] == [3 * i] for i, pid in enumerate(pids))
    assert f"colonies node 127.0.0.1:{cluster.api_port(0)} failed" in log
    assert f"switching to 127.0.0.1:{cluster.api_port(1)}" in log
    assert done_at_kill < CALLS  # the kill landed mid-drain
    assert status == 0
