"""The executor's sandbox slots: who gets one next, how long a call may wait for one, and
when a worker thread may assign another call.

A call holds one of ``concurrency`` slots while it runs. Waiting calls get them earliest
deadline first (the server's deadline: receipt + maxexectime; a call without one counts as
``UNTIMED_S``), and none waits past the moment its maxexectime can no longer be met:

- a call whose process the server can still retry (``retries < maxretries``, or
  ``maxretries`` -1) waits until half of its budget is gone at most. If no slot has freed by
  then, the executor reports nothing and lets it go back to the queue: the server requeues it
  at its deadline (counting one retry) and any executor, this one included, runs it afresh.
  Colonies v1.9.12 has no request by which an executor hands a process back before that; the
  executor never starts a call it let go, so the call is neither lost nor run twice;
- a call the server cannot retry waits until its budget is used up (then ``timeout``, with
  the wait in the reason): started late, it still runs, which is more than a requeue would do;
- a call without maxexectime waits as long as it takes.

Workers outnumber slots (``--ahead``), so that over a WAN link a slot finds its next call
already here. A worker assigns only while the call it gets can expect a slot soon
(:meth:`Slots.admit`): a slot is *ready* when it is free or its call has run less than
``AHEAD_MAX_CALL_S``, and fewer calls may wait than slots are ready; a call that would wait
also needs calls to take less than ``AHEAD_MAX_CALL_S`` on average. Slots held by long calls
(resource bombs up to their wall limit) therefore stop assigning, even while short calls keep
the average low, and the processes stay in the Colonies queue for other executors.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

AHEAD_MAX_CALL_S = 0.5  # a call running longer than this is slow: no slot is expected soon
KEEP_SHARE = 0.5  # a call that can be retried starts with at least this share of its budget
MIN_BUDGET_S = 0.1  # the smallest budget a call can start with (budgets are whole tenths)
UNTIMED_S = 60.0  # the deadline, after receipt, by which a call without maxexectime is served


class Slot:
    """One slot held by one call (from :meth:`Slots.acquire` to :meth:`Slots.release`)."""

    __slots__ = ("started",)

    def __init__(self, started: float) -> None:
        self.started = started


class Slots:
    """``count`` sandbox slots; waiting calls get them earliest deadline first."""

    def __init__(self, count: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = max(1, count)
        self._clock = clock
        self._cond = threading.Condition()
        self._waiting: list[tuple[float, int]] = []  # (deadline, arrival), sorted
        self._arrivals = itertools.count()
        self._running: set[Slot] = set()
        self.call_s = 0.0  # moving average of the time a call holds its slot
        self.refusals = 0  # times admit said no

    def acquire(self, deadline: float, timeout: float | None = None) -> Slot | None:
        """A slot once no waiting call has an earlier ``deadline`` (then: arrived earlier);
        None after ``timeout`` seconds."""
        entry = (deadline, next(self._arrivals))
        with self._cond:
            bisect.insort(self._waiting, entry)
            try:
                if self._cond.wait_for(
                    lambda: self._waiting[0] == entry and len(self._running) < self.count,
                    None if timeout is None else max(0.0, timeout),
                ):
                    slot = Slot(self._clock())
                    self._running.add(slot)
                    return slot
                return None
            finally:
                self._waiting.remove(entry)
                self._cond.notify_all()  # the next in line may now be first

    def release(self, slot: Slot) -> None:
        with self._cond:
            if slot in self._running:
                self._running.discard(slot)
                self.call_s = 0.8 * self.call_s + 0.2 * (self._clock() - slot.started)
            self._cond.notify_all()

    def admit(self, timeout: float) -> bool:
        """Whether a call assigned now can expect a slot soon; waits up to ``timeout``
        seconds (woken by every slot taken or freed) for the answer yes."""
        with self._cond:
            if self._cond.wait_for(self._admissible, timeout):
                return True
            self.refusals += 1
            return False

    def _admissible(self) -> bool:
        free = self.count - len(self._running)
        if free > len(self._waiting):
            return True  # it would run at once
        if self.call_s > AHEAD_MAX_CALL_S:
            return False
        now = self._clock()
        young = sum(1 for s in self._running if now - s.started < AHEAD_MAX_CALL_S)
        return len(self._waiting) < free + young

    def waiting(self) -> int:
        with self._cond:
            return len(self._waiting)

    def busy(self) -> tuple[int, float]:
        """(calls holding a slot, seconds the longest of them has run): for messages."""
        now = self._clock()
        with self._cond:
            longest = max((now - s.started for s in self._running), default=0.0)
            return len(self._running), longest


def can_retry(process: Mapping[str, Any]) -> bool:
    """Whether the server requeues ``process`` at its deadline instead of failing it
    (v1.9.12 fails it when ``retries >= maxretries > -1``, and requeues it otherwise)."""
    spec = process.get("spec")
    maxretries = spec.get("maxretries") if isinstance(spec, Mapping) else None
    retries = process.get("retries")
    if not _whole(maxretries) or not _whole(retries):
        return False  # unknown: assume the server would fail it, so never give it up
    return maxretries <= -1 or retries < maxretries


def start_by(maxexectime: float | None, close_margin: float, retry: bool) -> float | None:
    """Seconds after receipt by which a call must have its slot; None: no limit.

    A call the server can retry keeps ``KEEP_SHARE`` of its budget (else it is let go);
    one it cannot retry waits until ``MIN_BUDGET_S`` is left."""
    if maxexectime is None:
        return None
    budget = maxexectime - close_margin
    return budget * (1 - KEEP_SHARE) if retry else budget - MIN_BUDGET_S


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
