"""Fault and bad-input drills against the real local stack (drills.py and bad_input.py, which
bench/soak.py runs too). Each drill starts its own executor(s) with a unique executor type,
breaks one thing, checks that every call still ends with the right state and a clear reason
and that the executor keeps serving, and repairs what it broke; ``restore_stack`` runs
``scripts/stack.sh up`` after the drills that stop a service. Each takes seconds (the kill -9
drill waits for the server's maxexectime of 3 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

import bad_input
import drills
import harness

pytestmark = pytest.mark.colonies


@pytest.fixture(scope="module")
def member(stack):
    return harness.member_client()


def assert_clean(drill: harness.Drill) -> None:
    print(f"\n{drill.summary()}")
    assert drill.ok, "\n".join(drill.problems)


def test_kill_9_with_several_calls_in_flight(member, tmp_path: Path):
    """3 calls running in 3 sandbox children; the executor is SIGKILLed: its forker and
    children go with it, and another executor completes all 3 (retries == 1 each)."""
    drill = drills.drill_kill9_inflight(member, tmp_path, inflight=3)
    assert_clean(drill)
    assert drill.facts["completed_by_second"] == 3
    assert drill.facts["retries"] == [1, 1, 1]


@pytest.mark.parametrize("service", ["colonies", "postgres"])
def test_service_restarted_mid_run(member, restore_stack, tmp_path: Path, service: str):
    """Submitting and serving while the Colonies server or PostgreSQL restarts: nothing lost,
    nothing requeued, closes that failed meanwhile delivered late, few log lines, and a call
    the server had assigned to the executor behind its back (an orphaned assignment, as when an
    assign request fails after its UPDATE committed) served after the outage."""
    drill = drills.drill_service_restart(member, restore_stack, tmp_path, service)
    assert_clean(drill)
    assert drill.facts["lost"] == 0
    assert drill.facts["closes_delivered_late"] > 0
    assert drill.facts["adopted"] == 1  # the call left assigned to it before the outage


def test_s3_down_cached_runs_uncached_unavailable_then_recovers(
    member, restore_stack, tmp_path: Path
):
    assert_clean(drills.drill_s3_down(member, restore_stack, tmp_path))


def test_sandbox_child_killed_from_outside(member, tmp_path: Path):
    drill = drills.drill_child_sigkill(member, tmp_path)
    assert_clean(drill)
    assert drill.facts["reason"].startswith("crash: killed by SIGKILL not sent by the sandbox")


def test_full_temp_filesystem(member, tmp_path: Path):
    drill = drills.drill_full_tmp(member, tmp_path)
    assert_clean(drill)
    assert drill.facts["failed_while_full"] >= 1
    assert "No space left on device" in drill.facts["reason"]


def test_function_that_closes_or_abuses_stdout(member, tmp_path: Path):
    assert_clean(drills.drill_stdout_tricks(member, tmp_path))


@pytest.mark.fork
def test_print_works_with_fd_1_closed_in_the_child():
    """The trusted helper alone (also part of the stdout drill): print() output is captured
    in memory by the child, so a closed fd 1 changes nothing."""
    result = drills.fd1_closed_in_child()
    assert result["ok"], result


def test_bad_input_fails_each_process_with_a_clear_reason(member, tmp_path: Path):
    drill = bad_input.drill_bad_input(member, tmp_path)
    assert_clean(drill)
    facts = drill.details
    assert facts["path in name"].startswith("spec: invalid function name '../x'")
    assert facts["file: huge"].startswith("not_found: ") and "source limit" in facts["file: huge"]
    assert facts["file: empty"].endswith(" is empty")
    assert facts["file: notpython"].startswith("compile: ")
    assert "crash" not in drill.facts["ended as"] and drill.facts["new files"] == 0
