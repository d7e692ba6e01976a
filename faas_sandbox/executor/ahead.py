"""The executor's sandbox slots: when a worker thread may take another call, who gets a
slot next, and how long a call may wait for one.

A call holds one of ``concurrency`` slots while it runs. Workers outnumber slots
(``--ahead``), so that over a WAN link assigns and closes of several calls overlap. Colonies
starts a process's maxexectime at assignment, so a call that waits here for a slot pays for
the wait out of its budget. A worker therefore asks :meth:`Slots.admit` before it assigns, and
holds the :class:`Claim` it gets until its call has a slot (or it got no call):

- **a free slot for every call in hand**: while fewer calls are claimed than slots are free,
  any worker may assign, and its call never waits;
- **ahead of a free slot** only while calls are short: the last ``CALM_CALLS`` calls each
  held their slot less than ``AHEAD_MAX_CALL_S``, and no call is running longer. One long call
  (a resource bomb runs up to its wall limit) stops it at once, until ``CALM_CALLS`` short
  calls in a row have ended again; the processes then stay in the Colonies queue for any
  executor. A new executor starts without that evidence.

Waiting calls get slots earliest deadline first (the server's deadline: receipt +
maxexectime; a call without one counts as ``UNTIMED_S``), and none waits past the moment its
maxexectime can no longer be met:

- a call whose process the server can still retry (``retries < maxretries``, or
  ``maxretries`` -1) waits until half of its budget is gone at most. If no slot has freed by
  then, the executor reports nothing and lets it go back to the queue: the server requeues it
  at its deadline (counting one retry) and any executor, this one included, runs it afresh.
  Colonies v1.9.12 has no request by which an executor hands a process back before that; the
  executor never starts a call it let go, so the call is neither lost nor run twice;
- a call the server cannot retry waits until its budget is used up (then ``timeout``, with
  the wait in the reason): started late, it still runs, which is more than a requeue would do;
- a call without maxexectime waits as long as it takes.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

AHEAD_MAX_CALL_S = 0.5  # a call running longer than this is long
CALM_CALLS = 50  # short calls in a row before calls are assigned ahead of a free slot
KEEP_SHARE = 0.5  # a call that can be retried starts with at least this share of its budget
MIN_BUDGET_S = 0.1  # the smallest budget a call can start with (budgets are whole tenths)
UNTIMED_S = 60.0  # the deadline, after receipt, by which a call without maxexectime is served


class Slot:
    """One slot held by one call (from :meth:`Slots.acquire` to :meth:`Slots.release`)."""

    __slots__ = ("started",)

    def __init__(self, started: float) -> None:
        self.started = started


class Claim:
    """A call in hand, or about to be, that has no slot yet (see :meth:`Slots.admit`)."""

    __slots__ = ("live",)

    def __init__(self) -> None:
        self.live = True


class Slots:
    """``count`` sandbox slots; waiting calls get them earliest deadline first."""

    def __init__(self, count: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.count = max(1, count)
        self._clock = clock
        self._cond = threading.Condition()
        self._claims = 0  # live claims: calls in hand (or being assigned) without a slot
        self._waiting: list[tuple[float, int]] = []  # (deadline, arrival), sorted
        self._arrivals = itertools.count()
        self._running: set[Slot] = set()
        self.short_run = 0  # calls in a row that held their slot less than AHEAD_MAX_CALL_S
        self.refusals = 0  # times admit said no

    def admit(self, timeout: float) -> Claim | None:
        """A claim when a call taken now can expect a slot (the rules above); waits up to
        ``timeout`` seconds, woken by every slot taken or freed; None: do not assign."""
        with self._cond:
            if not self._cond.wait_for(self._admissible, timeout):
                self.refusals += 1
                return None
            self._claims += 1
            return Claim()

    def claim(self) -> Claim:
        """A claim whatever the rules say: for a call already in hand (an adopted orphan)."""
        with self._cond:
            self._claims += 1
            return Claim()

    def unclaim(self, claim: Claim | None) -> None:
        """``claim``'s call needs no slot (no call, or it ended); idempotent."""
        with self._cond:
            if claim is not None and claim.live:
                claim.live = False
                self._claims -= 1
                self._cond.notify_all()

    def _admissible(self) -> bool:
        free = self.count - len(self._running)
        if self._claims < free:
            return True  # a free slot for every call in hand
        now = self._clock()
        if any(now - s.started >= AHEAD_MAX_CALL_S for s in self._running):
            return False
        return self.short_run >= CALM_CALLS

    def acquire(self, claim: Claim, deadline: float, timeout: float | None = None) -> Slot | None:
        """A slot for ``claim``'s call once no waiting call has an earlier ``deadline``
        (then: arrived earlier); None after ``timeout`` seconds."""
        entry = (deadline, next(self._arrivals))
        with self._cond:
            bisect.insort(self._waiting, entry)
            try:
                if not self._cond.wait_for(
                    lambda: self._waiting[0] == entry and len(self._running) < self.count,
                    None if timeout is None else max(0.0, timeout),
                ):
                    return None
                slot = Slot(self._clock())
                self._running.add(slot)
                if claim.live:
                    claim.live = False
                    self._claims -= 1
                return slot
            finally:
                self._waiting.remove(entry)
                self._cond.notify_all()  # the next in line may now be first

    def release(self, slot: Slot) -> None:
        with self._cond:
            if slot in self._running:
                self._running.discard(slot)
                short = self._clock() - slot.started < AHEAD_MAX_CALL_S
                self.short_run = self.short_run + 1 if short else 0
            self._cond.notify_all()

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
    if not isinstance(maxretries, int) or not isinstance(retries, int):
        return False  # unknown: assume the server would fail it, so never give it up
    if isinstance(maxretries, bool) or isinstance(retries, bool):
        return False
    return maxretries <= -1 or retries < maxretries


def start_by(maxexectime: float | None, close_margin: float, retry: bool) -> float | None:
    """Seconds after receipt by which a call must have its slot; None: no limit.

    A call the server can retry keeps ``KEEP_SHARE`` of its budget (else it is let go);
    one it cannot retry waits until ``MIN_BUDGET_S`` is left."""
    if maxexectime is None:
        return None
    budget = maxexectime - close_margin
    return budget * (1 - KEEP_SHARE) if retry else budget - MIN_BUDGET_S
