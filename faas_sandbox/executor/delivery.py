"""Getting results to the server: log first, then close or fail; never drop one unreachable.

Rules (protocol §6.3):

- Every text sent (log, errors) passes :func:`~faas_sandbox.executor.texts.for_server` first:
  NUL and lone surrogates escaped visibly, so the server never refuses a reason (v1.9.12
  refuses a NUL only after it has set the state, leaving a failure without its reason).
- The process log (``add_log``) goes first: the server takes logs only while the process is
  RUNNING, so a log after close is refused.
- Refused by the server (403/400/500 with a message): the server has moved on (requeued after
  maxexectime, closed, removed). Log one line and drop the report; never retry it. Except a
  403 "not a member", which v1.9.12 also answers while its PostgreSQL restarts
  (:mod:`.denial`): that one is retried like an unreachable server until it has lasted
  ``confirm_s`` for this report.
- Unreachable (refused connection, reset, timeout, or the server's database down: see
  ``colonies.backend_down``): keep the rest of the report in a queue that one thread retries
  with capped, jittered backoff until the server takes it or says no. A report that still
  fails goes to the back of the queue, so one that the server keeps failing cannot hold up
  the others; when a backlog has drained, one line says how many went out late.

:class:`Reachability` turns many failures into ONE log line per state change.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable
from .denial import CONFIRM_S, Denials, maybe_database_restart
from .texts import for_log, for_server

log = logging.getLogger(__name__)


class Closer(Protocol):
    def close(self, processid: str, out: list[Any]) -> None: ...
    def fail(self, processid: str, errors: list[str]) -> None: ...
    def add_log(self, processid: str, message: str) -> None: ...


@dataclass(slots=True)
class Report:
    """What to tell the server about one process. ``ok`` closes with ``out``, else fails."""

    processid: str
    ok: bool
    out: list[Any]
    errors: list[str]
    log_text: str | None = None  # sent with add_log before the close, when not None
    denials: Denials | None = None  # its run of "not a member" refusals, from the first one


class Backoff:
    """Capped exponential delays with full jitter: 0.1, 0.2, 0.4 ... max seconds."""

    def __init__(
        self, initial: float = 0.1, maximum: float = 5.0, rand: Callable[[], float] = random.random
    ) -> None:
        self.initial, self.maximum, self._rand = initial, maximum, rand
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.maximum, self._next * 2)
        return delay * (0.5 + self._rand() / 2)

    def reset(self) -> None:
        self._next = self.initial


class Reachability:
    """Whether Colonies answered lately; logs once when that changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reachable = True

    def down(self, exc: BaseException) -> None:
        with self._lock:
            changed, self.reachable = self.reachable, False
        if changed:
            log.warning("colonies unreachable (%s), retrying", exc)

    def up(self) -> None:
        if self.reachable:  # the common case: no lock
            return
        with self._lock:
            changed, self.reachable = not self.reachable, True
        if changed:
            log.warning("colonies reachable again")


class Outbox:
    """Delivers reports now if it can, later if the server is unreachable, never twice."""

    def __init__(
        self,
        client: Closer,
        reach: Reachability | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        confirm_s: float = CONFIRM_S,
    ) -> None:
        self._client = client
        self._clock, self.confirm_s = clock, confirm_s
        self.reach = reach or Reachability()
        self._backoff = backoff or Backoff()
        self._pending: collections.deque[Report] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._wake = threading.Event()
        self._sleep = sleep or self._wake.wait
        self.delivered = 0
        self.dropped = 0
        self.late = 0  # delivered by the retrier in the current backlog

    def deliver(self, report: Report) -> bool:
        """Try once now. True when the server has the final word (taken or refused)."""
        with self._cond:
            if self._pending:  # keep order behind earlier reports; the retrier will get to it
                self._pending.append(report)
                self._cond.notify_all()
                return False
        if self._attempt(report):
            return True
        with self._cond:
            self._pending.append(report)
            self._cond.notify_all()
        return False

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def pending_ids(self) -> list[str]:
        with self._cond:
            return [r.processid for r in self._pending]

    def _attempt(self, report: Report) -> bool:
        """Send what is left of the report; False if the server could not be reached."""
        processid = report.processid
        try:
            if report.log_text is not None:
                try:
                    self._client.add_log(processid, for_server(report.log_text))
                except (ColoniesRefused, ReplyUnreadable) as exc:
                    log.warning("call %s: log refused by the server (%s)", processid, for_log(exc))
                report.log_text = None  # sent or refused: never again
            if report.ok:
                self._client.close(processid, report.out)
            else:
                self._client.fail(processid, [for_server(e) for e in report.errors])
        except ColoniesUnreachable as exc:
            self.reach.down(exc)
            return False
        except ReplyUnreadable as exc:  # it answered, with something we cannot read: done
            self.reach.up()
            self.delivered += 1
            log.warning(
                "call %s: the server's answer to the %s is unreadable (%s)",
                processid,
                "close" if report.ok else "fail",
                exc,
            )
            return True
        except ColoniesRefused as exc:
            self.reach.up()
            if exc.status == 403 and maybe_database_restart(str(exc)):
                if report.denials is None:
                    report.denials = Denials(self._clock, self.confirm_s)
                first, final = report.denials.denied()
                if first:
                    log.warning(
                        "call %s: %s refused (%s); retrying for %gs (the server also says this "
                        "while its database restarts)",
                        processid,
                        "close" if report.ok else "fail",
                        for_log(exc),
                        self.confirm_s,
                    )
                if not final:
                    return False
            self.dropped += 1
            log.warning(
                "call %s: %s refused by the server, dropped (%s)",
                processid,
                "close" if report.ok else "fail",
                for_log(exc),
            )
            return True
        self.reach.up()
        self.delivered += 1
        return True

    def run(self) -> None:
        """The retrier thread: resend the oldest pending report with backoff until stopped."""
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if not self._pending:
                    return
                report = self._pending[0]
            before = self.delivered
            if self._attempt(report):
                with self._cond:
                    for i, pending in enumerate(self._pending):
                        if pending is report:
                            del self._pending[i]
                            break
                    self._cond.notify_all()
                    self.late += self.delivered - before
                    drained = not self._pending
                if drained and self.late:
                    log.warning("%d queued result(s) delivered late", self.late)
                    self.late = 0
                self._backoff.reset()
            else:
                with self._cond:
                    if self._stop:
                        return
                    if len(self._pending) > 1 and self._pending[0] is report:
                        self._pending.rotate(-1)  # let the others have a go
                self._sleep(self._backoff.next())

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending or ``timeout`` passes; True when empty."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        """End run() after the current attempt (pending reports stay pending)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._wake.set()
