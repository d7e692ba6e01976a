"""Sandbox slots and assigning ahead (executor/ahead.py): a call taken ahead of a free slot
runs in time, goes back to the queue, or fails as timeout only when it truly cannot run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from faas_sandbox.executor.ahead import AHEAD_MAX_CALL_S, Slots, can_retry, start_by
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.executor.loop import Executor

from .test_executor import STORE, FakeColonies, FakeS3, FakeSandbox


class Clock:
    """time.monotonic plus an offset the test moves forward (calls look older)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (a positive condition, never an absence)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# -- Slots ------------------------------------------------------------------------------------


def test_slots_go_to_the_earliest_deadline_then_the_earliest_arrival():
    slots = Slots(1)
    first = slots.acquire(0.0)
    order: list[str] = []

    def take(name: str, deadline: float) -> None:
        slot = slots.acquire(deadline)
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
    held = slots.acquire(0.0)
    assert slots.acquire(0.0, 0.05) is None
    assert slots.waiting() == 0  # the call that gave up is no longer in line
    slots.release(held)
    assert slots.acquire(0.0, 0.0) is not None


def test_assigns_only_while_a_slot_is_free_or_held_by_a_young_call():
    clock = Clock()
    slots = Slots(1, clock)
    assert slots.admit(0)  # free slot
    held = slots.acquire(0.0)
    assert slots.admit(0)  # a young call: its slot is expected soon
    clock.offset += AHEAD_MAX_CALL_S + 0.1
    assert not slots.admit(0)  # a long call holds the only slot (a bomb, say)
    assert slots.refusals == 1
    slots.release(held)
    assert slots.admit(0)


def test_assigns_stop_when_as_many_calls_wait_as_slots_are_ready():
    clock = Clock()
    slots = Slots(2, clock)
    held = [slots.acquire(0.0), slots.acquire(0.0)]  # both young: 2 ready
    done = threading.Event()
    got: list[Any] = []

    def wait_then_hold() -> None:
        got.append(slots.acquire(0.0))
        done.wait(10)
        slots.release(got[-1])

    waiters = [threading.Thread(target=wait_then_hold) for _ in range(2)]
    waiters[0].start()
    assert until(lambda: slots.waiting() == 1)
    assert slots.admit(0)  # 1 waiting < 2 ready
    waiters[1].start()
    assert until(lambda: slots.waiting() == 2)
    assert not slots.admit(0)  # 2 waiting, 2 ready
    clock.offset += AHEAD_MAX_CALL_S + 0.1  # both calls long now
    slots.release(held.pop())  # the first waiter runs (young); the other waits
    assert until(lambda: len(got) == 1 and slots.waiting() == 1)
    assert not slots.admit(0)  # 1 waiting, 1 ready (the young call)
    slots.release(held.pop())
    done.set()
    for waiter in waiters:
        waiter.join(5)
    assert slots.admit(0)


def test_a_call_that_would_wait_is_not_assigned_while_calls_are_slow_on_average():
    slots = Slots(2)
    slots.call_s = AHEAD_MAX_CALL_S + 0.5
    held = slots.acquire(0.0)
    assert slots.admit(0)  # one slot free: the call would run at once
    held2 = slots.acquire(0.0)
    assert not slots.admit(0)  # both held by young calls, but calls are slow on average
    slots.release(held)
    slots.release(held2)


def test_a_waiting_thread_is_told_yes_as_soon_as_a_slot_frees():
    clock = Clock()
    slots = Slots(1, clock)
    held = slots.acquire(0.0)
    clock.offset += AHEAD_MAX_CALL_S + 0.1
    answer: list[bool] = []
    asker = threading.Thread(target=lambda: answer.append(slots.admit(30)))
    asker.start()
    slots.release(held)
    asker.join(5)
    assert answer == [True]


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


@pytest.fixture
def ahead():
    """One sandbox slot, one thread assigning ahead; p0 (``block``) holds the slot."""
    sandbox = BlockSandbox()
    client = Recorder(sandbox)
    clock = Clock()
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(
        client, sandbox, code, name="t", concurrency=1, ahead=1, grace=1, clock=clock
    )
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
    assert until(lambda: "p1" in executor._let_go)
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
    clock.offset += AHEAD_MAX_CALL_S + 0.1
    client.submit_retryable("p1", 0, 0, maxexectime=30)
    refusals = executor.slots.refusals
    assert until(lambda: executor.slots.refusals >= refusals + 2)  # looked since, said no
    assert "p1" not in client.takers
    sandbox.release.set()
    assert {c[1] for c in client.wait_for(2) if c[0] == "close"} == {"p0", "p1"}
    assert client.takers["p1"][1] == 0  # assigned when no call was running
