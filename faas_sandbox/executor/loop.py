"""The pull loop: N worker threads long-poll Colonies and run each call in the ONE shared Sandbox.

Each worker thread claims a sandbox slot (ahead.py), assigns a process and serves it
(calling.py: parse, fetch the code, run it in the sandbox, report). After an outage, the first
successful assign triggers one look for assignments whose reply was lost (adoption.py); the
processes the executor holds are in its ledger (ledger.py). Worker threads are supervised: one
that dies is logged and restarted; too many deaths stop the executor with status 1.
``liveness`` says whether it takes work (``/healthz``). See docs/executor.md.

Latency: each worker thread waits one round trip for its assign and one for its close, so over
a WAN link a thread per sandbox slot leaves the slots idle most of the time: ``ahead`` more
threads keep assigns in flight, ahead of a free slot only while calls are short (ahead.py).

Lifecycle: :meth:`Executor.request_stop` (what signal handlers call: it only bumps a counter)
stops assigning and ends long-polls at once; in-flight calls get ``grace`` seconds, then they are
failed as ``interrupted``; a second request ends them at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..colonies.reply import Unreadable
from ..colonies.spec import MAX_ARGS_TEXT_BYTES
from ..errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable
from .adoption import Adoption
from .ahead import Claim, Slots
from .calling import CallPath, SandboxLike
from .codestore import CodeStore
from .delivery import Backoff, Outbox, Reachability
from .denial import CONFIRM_S, Denials, is_verdict
from .ledger import Ledger
from .liveness import Liveness
from .reports import interrupted_report
from .texts import for_log

log = logging.getLogger(__name__)

MAX_RESTARTS = 5  # worker deaths within RESTART_WINDOW_S before the executor gives up
RESTART_WINDOW_S = 60.0


class ExecutorClient(Protocol):
    def assign(self, timeout: int) -> dict[str, Any] | None: ...
    def abort_assigns(self) -> None: ...
    def close(self, processid: str, out: list[Any]) -> None: ...
    def fail(self, processid: str, errors: list[str]) -> None: ...
    def add_log(self, processid: str, message: str) -> None: ...
    def list_processes(
        self, state: int, count: int = 100, executortype: str = ""
    ) -> list[dict[str, Any] | Unreadable]: ...
    def get_process(self, processid: str) -> dict[str, Any]: ...


class Executor:
    """Serves processes until stopped; :meth:`run` blocks and returns an exit status."""

    def __init__(
        self,
        client: ExecutorClient,
        sandbox: SandboxLike,
        code: CodeStore,
        *,
        name: str,
        concurrency: int,
        assign_timeout: int = 10,
        grace: float = 10.0,
        close_margin: float = 0.25,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
        executor_id: str | None = None,
        executor_type: str | None = None,
        max_args_bytes: int = MAX_ARGS_TEXT_BYTES,
        max_call_s: float = 3600.0,
        ahead: int | None = None,
        deny_confirm_s: float = CONFIRM_S,
    ) -> None:
        self.client, self.sandbox, self.code = client, sandbox, code
        self.name, self.concurrency = name, max(1, concurrency)
        self.ahead = 2 * self.concurrency + 2 if ahead is None else max(0, ahead)
        self.slots = Slots(self.concurrency, clock)
        self.executor_id, self.executor_type = executor_id, executor_type  # for adoption
        self.assign_timeout, self.grace, self.close_margin = assign_timeout, grace, close_margin
        self.metrics = metrics
        self._clock = clock
        self.reach = Reachability()
        self.outbox = Outbox(client, self.reach)
        self._stopping = threading.Event()
        self._signals = 0  # bumped by signal handlers, read by run()
        self._fatal: str | None = None
        self.denials = Denials(clock, deny_confirm_s)  # when a 403 on assign is final
        self._lock = threading.Lock()
        self._restarts: list[float] = []
        self.max_args_bytes = max_args_bytes
        self.ledger = Ledger(clock)
        self.calls = CallPath(
            client,
            sandbox,
            code,
            self.slots,
            self.outbox,
            self.ledger,
            give_up=self._give_up,
            wait=self._stopping.wait,
            clock=clock,
            close_margin=close_margin,
            metrics=metrics,
            max_args_bytes=max_args_bytes,
        )
        self.adoption = Adoption(
            client,
            executor_id,
            executor_type,
            self.calls,
            known=self._known,
            stopping=self._stopping,
            clock=clock,
        )
        self.liveness = Liveness(
            self.concurrency + self.ahead,
            poll_s=assign_timeout + 20.0,
            call_s=max_call_s,
            clock=clock,
        )

    @property
    def served(self) -> int:
        """Calls served so far (their report handed to the outbox)."""
        return self.ledger.served

    def request_stop(self) -> None:
        """First call: drain then stop; second: stop now. Safe in a signal handler."""
        self._signals += 1

    # -- main thread -----------------------------------------------------------------------------
    def run(self) -> int:
        retrier = threading.Thread(target=self.outbox.run, name="faas-outbox", daemon=True)
        retrier.start()
        workers = [
            threading.Thread(
                target=self._supervised, args=(i,), name=f"faas-worker-{i}", daemon=True
            )
            for i in range(self.concurrency + self.ahead)
        ]
        for worker in workers:
            worker.start()
        log.info(
            "executor %s serving (%d in flight at most, %d more assigned ahead)",
            self.name,
            self.concurrency,
            self.ahead,
        )
        stop_at: float | None = None
        while True:
            time.sleep(0.05)
            now = self._clock()
            if stop_at is None and (self._signals or self._fatal):
                stop_at = now + self.grace
                self._stopping.set()
                self.liveness.stopping(self._fatal or "stop requested")
                log.info(
                    "stopping: no new calls; %d in flight get up to %gs (signal again to "
                    "stop at once)",
                    self.ledger.in_flight(),
                    self.grace,
                )
            if stop_at is None:
                continue
            self.client.abort_assigns()  # repeated: a worker may have just entered a long-poll
            busy = self.ledger.in_flight() > 0 or self.outbox.pending() > 0
            if not busy and not any(w.is_alive() for w in workers):
                break
            if self._signals >= 2 or now >= stop_at:
                self._interrupt(
                    "a second stop request"
                    if self._signals >= 2
                    else f"the {self.grace:g}s grace period"
                )
                break
        self.outbox.stop()
        left = self.outbox.pending_ids()
        if left:
            log.error(
                "%d result(s) not delivered (colonies unreachable): %s; the server "
                "requeues them after their maxexectime",
                len(left),
                ", ".join(left),
            )
        log.info("executor %s stopped after %d call(s)", self.name, self.served)
        return 1 if self._fatal else 0

    def _interrupt(self, why: str) -> None:
        self.calls.closing = True
        pending = self.ledger.abandon_all()
        for processid, function in pending.items():
            self.outbox.deliver(interrupted_report(processid, function, self.name, why))
        self.outbox.flush(1.0 if self._signals < 2 else 0.0)

    # -- worker threads -----------------------------------------------------------------------
    def _supervised(self, index: int) -> None:
        """Run worker ``index``; an unexpected exception is logged once and the worker
        restarted; more than MAX_RESTARTS deaths in RESTART_WINDOW_S stop the executor."""
        while not self._stopping.is_set():
            try:
                self._worker(index)
                return
            except BaseException as exc:  # a worker must never die silently
                if self._stopping.is_set():
                    return
                now = self._clock()
                with self._lock:
                    self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
                    self._restarts.append(now)
                    deaths = len(self._restarts)
                log.error(
                    "worker %d died (%s: %s); restarting it (%d death(s) in %gs)",
                    index,
                    type(exc).__name__,
                    for_log(exc),
                    deaths,
                    RESTART_WINDOW_S,
                    exc_info=True,
                )
                if deaths > MAX_RESTARTS:
                    self._fatal = f"workers died {deaths} times in {RESTART_WINDOW_S:g}s"
                    log.error("executor %s cannot recover: %s; stopping", self.name, self._fatal)
                    return
                self._stopping.wait(0.5)

    def _worker(self, index: int = 0) -> None:
        backoff = Backoff(initial=0.5, maximum=5.0)
        beat = self.liveness.beat
        while not self._stopping.is_set():
            beat(index, "assigning")
            claim = self.slots.admit(0.2)
            if claim is None:
                continue  # no slot expected soon: a call taken now would wait long
            try:
                process = self._assign(claim)
            except ReplyUnreadable as exc:
                self.reach.up()
                backoff.reset()
                beat(index, "serving")
                self.calls.unreadable(exc.fields.get("processid"), str(exc), "assign")
                continue
            except ColoniesUnreachable as exc:
                if self._stopping.is_set():
                    return
                self.reach.down(exc)
                self.liveness.reachable(False)
                self.adoption.suspect()
                self._stopping.wait(backoff.next())
                continue
            except ColoniesRefused as exc:
                if exc.status == 403 and is_verdict(str(exc)):
                    self.reach.up()
                    first, final = self.denials.denied()
                    if final:
                        self._fatal = f"assign refused: {exc}"
                        log.error(
                            "executor %s can no longer assign (%s): removed, rejected or "
                            "reaped as stale; stopping",
                            self.name,
                            exc,
                        )
                        return
                    if first:
                        log.warning(
                            "assign denied (%s); stopping unless an assign succeeds within %gs "
                            "(the server also says this while its database restarts)",
                            exc,
                            self.denials.confirm_s,
                        )
                    self._stopping.wait(backoff.next())
                    continue
                if exc.status == 403:  # not a verdict on us: e.g. a database error text
                    self.reach.down(exc)
                    self._stopping.wait(backoff.next())
                    continue
                self.reach.up()
                if exc.status not in (408, 503):  # 408/503: the colony's assignments are paused
                    log.warning("assign refused (%s), retrying", exc)
                self._stopping.wait(backoff.next())
                continue
            except Exception:  # an engine fault in our own code: never kill the worker
                log.exception("assign failed unexpectedly")
                self._stopping.wait(backoff.next())
                continue
            self.reach.up()
            self.liveness.reachable(True)
            self.denials.cleared()
            backoff.reset()
            if process is not None:
                beat(index, "serving")
                self.calls.serve(process, claim=claim)
            if self.adoption.due():
                beat(index, "serving")
                self.adoption.adopt()

    def _assign(self, claim: Claim) -> dict[str, Any] | None:
        """One assign; ``claim`` is given up unless a process came with it."""
        try:
            process = self.client.assign(self.assign_timeout)
        except BaseException:
            self.slots.unclaim(claim)
            raise
        if process is None:
            self.slots.unclaim(claim)
        return process

    def _known(self, processid: str) -> bool:
        return self.ledger.known(processid) or processid in self.outbox.pending_ids()

    def _give_up(self, reason: str) -> None:
        self._fatal = reason
