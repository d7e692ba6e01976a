"""Which processes the executor holds or held lately, by id, under one lock.

- **in flight**: taken (assigned or adopted) and not yet reported, with its function name
  once the spec is read (``?`` until then); the shutdown fails these as ``interrupted``;
- **served lately**: the last ``RECENT`` ids that were in flight or failed as unreadable, so
  that a stale listing of RUNNING processes cannot adopt one of them as an orphan;
- **let go**: a call that found no sandbox slot in time and was left for the server to
  requeue (ahead.py); RUNNING and ours until its deadline passes, so never adopted before;
- **abandoned**: in flight when the executor stopped waiting for it: its report, if it ever
  comes, is dropped (the ``interrupted`` failure went out instead).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

RECENT = 1024  # process ids remembered as served (so a stale listing cannot adopt them)


class Ledger:
    """The executor's process ids in flight, served lately, let go and abandoned."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._inflight: dict[str, str] = {}  # processid -> function
        self._recent: OrderedDict[str, None] = OrderedDict()  # served lately, oldest first
        self._let_go: dict[str, float] = {}  # not started, left to requeue -> when it is requeued
        self._abandoned: set[str] = set()
        self.served = 0  # calls whose report went to the outbox

    def start(self, processid: str) -> bool:
        """Note ``processid`` in flight; False when it is already (adopted and assigned)."""
        with self._lock:
            if processid in self._inflight:
                return False
            self._inflight[processid] = "?"
            return True

    def name(self, processid: str, function: str) -> None:
        """The function of a call in flight, now that its spec is read."""
        with self._lock:
            self._inflight[processid] = function

    def finish(self, processid: str) -> None:
        """``processid`` is no longer in flight; it is remembered as served lately."""
        with self._lock:
            self._inflight.pop(processid, None)
            self._remember(processid)

    def first_sight(self, processid: str) -> bool:
        """True, and ``processid`` remembered as served, unless it is in flight or was
        served lately (for a process failed unread: fail it once)."""
        with self._lock:
            if processid in self._inflight or processid in self._recent:
                return False
            self._remember(processid)
            return True

    def abandoned(self, processid: str) -> bool:
        """Whether the executor stopped waiting for ``processid`` (drop its report)."""
        with self._lock:
            return processid in self._abandoned

    def count_served(self) -> None:
        with self._lock:
            self.served += 1

    def let_go(self, processid: str, until: float) -> None:
        """``processid`` is left for the server, which requeues it at ``until``."""
        now = self._clock()
        with self._lock:
            self._let_go = {p: t for p, t in self._let_go.items() if t > now}
            self._let_go[processid] = until

    def was_let_go(self, processid: str) -> bool:
        """Whether ``processid`` was let go and the server has not requeued it yet."""
        with self._lock:
            return self._let_go.get(processid, -math.inf) > self._clock()

    def known(self, processid: str) -> bool:
        """In flight, served lately, or let go and not yet requeued: never adopt it."""
        with self._lock:
            known = processid in self._inflight or processid in self._recent
            return known or self._let_go.get(processid, -math.inf) > self._clock()

    def abandon_all(self) -> dict[str, str]:
        """Every call in flight (processid -> function), from now on abandoned."""
        with self._lock:
            pending = dict(self._inflight)
            self._abandoned.update(pending)
        return pending

    def in_flight(self) -> int:
        return len(self._inflight)

    def _remember(self, processid: str) -> None:
        """Note ``processid`` as served lately (call with the lock held)."""
        self._recent[processid] = None
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
