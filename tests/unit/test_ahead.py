"""Sandbox slots and assigning ahead (executor/ahead.py): a call taken ahead of a free slot
runs in time, goes back to the queue, or fails as timeout only when it truly cannot run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from faas_sandbox.executor import ahead as ahead_module
from faas_sandbox.executor.ahead import (
    AHEAD_MAX_CALL_S,
    CALM_CALLS,
    Slots,
    can_retry,
    start_by,
)
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.executor.loop import Executor

from .test_executor import STORE, FakeColonies, FakeS3, FakeSandbox


class Clock:
    """time.monotonic (or, frozen, 1000) plus an offset the test moves forward."""

    def __init__(self, frozen: bool = False) -> None:
        self.offset = 0.0
        self.frozen = frozen

    def __call__(self) -> float:
        return (1000.0 if self.frozen else time.monotonic()) + self.offset


def until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (a positive condition, never an absence)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# -- Slots ------------------------------------------------------------------------------------


def hold(slots: Slots, deadline: float = 0.0) -> Any:
    """A slot taken as a worker takes one: claim, then acquire."""
    return slots.acquire(slots.claim(), deadline)


def test_slots_go_to_the_earliest_deadline_then_the_earliest_arrival():
    slots = Slots(1)
    first = hold(slots)
    order: list[str] = []

    def take(name: str, deadline: float) -> None:
        slot = hold(slots, deadline)
        order.append(name)
        slots.release(slot)

    waiters = []
    for n, (name, deadline) in enumerate([("late", 30.0), ("soon", 2.0), ("late2", 30.0)]):
        waiters.append(threading.Thread(target=take, args=(name, deadline)))
        waiters[-1].start()
        assert until(lambda n=n: slots.waiting() == n + 1)
    slots.release(first)
    for waiter in waiters:
        waiter.join(5)
    assert order == ["soon", "late", "late2"]


def test_a_wait_for_a_slot_ends_at_its_timeout():
    slots = Slots(1)
    held = hold(slots)
    claim = slots.claim()
    assert slots.acquire(claim, 0.0, 0.05) is None
    assert slots.waiting() == 0  # the call that gave up is no longer in line
    slots.unclaim(claim)
    slots.release(held)
    assert slots.acquire(slots.claim(), 0.0, 0.0) is not None


def test_a_free_slot_for_every_call_in_hand_then_no_more_claims_after_a_long_call():
    clock = Clock(frozen=True)
    slots = Slots(2, clock)
    # no evidence yet that calls are short (a new executor): no assigning ahead of a slot
    first, second = slots.admit(0), slots.admit(0)  # 2 free slots, 2 calls in hand
    assert first is not None and second is not None
    assert slots.admit(0) is None
    assert slots.refusals == 1
    slots.unclaim(second)  # that assign brought no call
    third = slots.admit(0)
    assert third is not None
    running = [slots.acquire(first, 0.0), slots.acquire(third, 0.0)]
    assert slots.admit(0) is None  # both slots busy
    slots.release(running.pop())
    assert slots.admit(0) is not None


def test_ahead_of_a_free_slot_only_after_short_calls_and_while_no_call_is_long():
    clock = Clock(frozen=True)
    slots = Slots(1, clock)
    for _ in range(CALM_CALLS - 1):
        slots.release(hold(slots))  # short calls (no time passes)
    held = hold(slots)
    assert slots.admit(0) is None  # CALM_CALLS - 1 short calls so far: not enough evidence
    slots.release(held)
    held = hold(slots)
    assert slots.short_run == CALM_CALLS
    assert slots.admit(0) is not None  # taken ahead: it waits for the slot briefly
    assert slots.admit(0) is not None
    clock.offset += AHEAD_MAX_CALL_S  # the running call is long now (a bomb, say)
    assert slots.admit(0) is None
    slots.release(held)  # it ended long: the evidence starts again
    assert slots.short_run == 0
    assert slots.admit(0) is None  # 2 claims in hand, 1 free slot


def test_a_waiting_worker_gets_its_claim_as_soon_as_a_slot_frees():
    clock = Clock(frozen=True)
    slots = Slots(1, clock)
    held = hold(slots)
    clock.offset += AHEAD_MAX_CALL_S
    answer: list[Any] = []
    asker = threading.Thread(target=lambda: answer.append(slots.admit(30)))
    asker.start()
    slots.release(held)
    asker.join(5)
    assert answer and answer[0] is not None


@pytest.mark.parametrize(
    ("retries", "maxretries", "expected"),
    [(0, 0, False), (0, 1, True), (1, 1, False), (3, -1, True), (0, None, False), (True, 2, False)],
)
def test_can_retry_follows_the_servers_rule(retries, maxretries, expected):
    process = {"retries": retries, "spec": {"maxretries": maxretries}}
    assert can_retry(process) is expected


def test_start_by_keeps_half_the_budget_only_when_the_server_can_retry():
    assert start_by(None, 0.25, True) is None
    assert start_by(2, 0.25, True) == pytest.approx(0.875)
    assert start_by(2, 0.25, False) == pytest.approx(1.65)


# -- the executor -----------------------------------------------------------------------------


class BlockSandbox(FakeSandbox):
    """``block`` holds its slot until ``release`` is set; counts the calls running."""

    def __init__(self) -> None:
        super().__init__()
        self.running = 0
        self.lock = threading.Lock()

    def call(self, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            self.running += 1
        try:
            return super().call(*args, **kwargs)
        finally:
            with self.lock:
                self.running -= 1


class Recorder(FakeColonies):
    """Records which thread assigned each process, and whether a call was running then;
    a process in ``only`` goes to the thread named there."""

    def __init__(self, sandbox: BlockSandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.takers: dict[str, tuple[str, int]] = {}
        self.only: dict[str, str] = {}

    def assign(self, timeout: int) -> dict | None:
        with self.lock:
            head = self.queue[0]["processid"] if self.queue else None
        if self.only.get(head, threading.current_thread().name) != threading.current_thread().name:
            time.sleep(0.01)
            return None
        process = super().assign(timeout)
        if process is not None:
            name = threading.current_thread().name
            self.takers[process["processid"]] = (name, self.sandbox.running)
        return process

    def submit_retryable(self, pid: str, retries: int, maxretries: int, **spec: Any) -> None:
        self.submit(pid, {"function": "convert", "arg": "21"}, maxretries=maxretries, **spec)
        with self.lock:
            self.queue[-1]["retries"] = retries


LONG_S = 30.0  # AHEAD_MAX_CALL_S in the executor tests: p0 stays young however slow the machine


@pytest.fixture
def ahead(monkeypatch):
    """One sandbox slot, one thread more; p0 (``block``) holds the slot, after enough
    short calls that a call may be assigned ahead of a free slot."""
    monkeypatch.setattr(ahead_module, "AHEAD_MAX_CALL_S", LONG_S)
    sandbox = BlockSandbox()
    client = Recorder(sandbox)
    clock = Clock()
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(
        client, sandbox, code, name="t", concurrency=1, ahead=1, grace=1, clock=clock
    )
    executor.slots.short_run = CALM_CALLS
    thread = threading.Thread(target=executor.run)
    thread.start()
    client.only["p0"] = "faas-worker-0"  # the slot's own thread: the other one is "ahead"
    client.submit("p0", {"function": "block"}, maxexectime=30)
    assert until(lambda: sandbox.running == 1)
    yield client, sandbox, executor, clock
    sandbox.release.set()
    executor.request_stop()
    executor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def test_short_calls_are_still_assigned_ahead_and_run_when_the_slot_frees(ahead):
    """The throughput path: p1 is taken ahead while p0 runs, waits, and runs in time."""
    client, sandbox, executor, _ = ahead
    client.submit_retryable("p1", 0, 0, maxexectime=2)
    assert until(lambda: executor.slots.waiting() == 1)  # taken ahead, waiting for the slot
    assert client.takers["p1"] == ("faas-worker-1", 1)
    sandbox.release.set()
    calls = client.wait_for(2)
    assert ("close", "p1", [69.8]) in calls and ("close", "p0", [1]) in calls
    assert sandbox.budgets[1] < 1.75  # its wait came out of its maxexectime


def test_an_ahead_call_that_finds_no_slot_in_time_goes_back_to_the_queue(ahead, caplog):
    """maxretries left: p1 is let go unreported (the server requeues it at its deadline,
    counting one retry) and never started here; p0 is unaffected."""
    client, sandbox, executor, _ = ahead
    client.submit_retryable("p1", 0, 1, maxexectime=2)
    assert until(lambda: executor.ledger.was_let_go("p1"))
    assert executor._known("p1")  # still RUNNING and ours: never adopted as an orphan
    assert [c for c in client.calls if c[1] == "p1"] == []
    assert "not started: no sandbox slot freed in" in caplog.text
    sandbox.release.set()
    assert client.wait_for(1) == [("close", "p0", [1])]
    assert sandbox.budgets == [29.7]  # p1 never ran


def test_an_ahead_call_the_server_cannot_retry_fails_with_the_wait_in_the_reason(ahead):
    """maxretries used up: p1 waits until its budget is gone, then fails as timeout,
    saying why (never earlier: it would have run had the slot freed)."""
    client, sandbox, _, _ = ahead
    client.submit_retryable("p1", 1, 1, maxexectime=2)
    calls = [c for c in client.wait_for(1) if c[0] != "add_log"]
    assert calls[0][:2] == ("fail", "p1")
    reason = calls[0][2][0]
    assert reason.startswith("timeout: maxexectime of 2s used up before the call started: ")
    assert "no sandbox slot freed in 1." in reason and "(1 call(s) running, the longest" in reason
    sandbox.release.set()
    assert [c for c in client.wait_for(2) if c[0] != "add_log"][1] == ("close", "p0", [1])


def test_no_call_is_assigned_ahead_while_the_slot_is_held_by_a_long_call(ahead):
    """p0 runs longer than AHEAD_MAX_CALL_S: the ahead thread declines (counted), so p1
    stays in the Colonies queue for any executor, and is taken only once the slot is free."""
    client, sandbox, executor, clock = ahead
    clock.offset += LONG_S + 0.1
    refusals = executor.slots.refusals
    assert until(lambda: executor.slots.refusals > refusals)  # no assign in flight from now on
    client.submit_retryable("p1", 0, 0, maxexectime=30)
    refusals = executor.slots.refusals
    assert until(lambda: executor.slots.refusals >= refusals + 2)  # looked since, said no
    assert "p1" not in client.takers
    sandbox.release.set()
    assert {c[1] for c in client.wait_for(2) if c[0] == "close"} == {"p0", "p1"}
    assert client.takers["p1"][1] == 0  # assigned when no call was running
