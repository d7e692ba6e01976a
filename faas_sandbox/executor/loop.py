"""The pull loop: N worker threads long-poll Colonies and run each call in the ONE shared Sandbox.

Per process: parse the spec (spec.py), fetch the code (codestore.py, cached), run it in a fresh
sandboxed child with the time left of the process's maxexectime, then report (delivery.py):

- success: ``close(processid, [element])``, the result's output element as the sandbox child encoded
  it (``Sandbox.call(element=True)``), spliced into the close message undecoded;
- failure: ``fail(processid, ["<kind>: <message>"])`` with the sandbox's kind (``Outcome.reason``)
  or ours: ``spec``, ``not_found``, ``unavailable`` (code not fetchable and not cached),
  ``crash`` (engine fault), ``interrupted`` (the executor stopped before the call finished);
- one ``add_log`` before the close, only when the call printed or failed: the prints, then a
  ``[faas-sandbox]`` line with the usage (wall, CPU, peak RSS). Every call's usage is in this
  process's own log line (``call <processid>: <function> ok in 0.003s cpu=... rss=...``), which
  costs no RPC: the server is the bottleneck, so the hot path is exactly assign + close.

Deadlines: a spec's maxexectime (> 0) is the server's deadline for the whole process; the call
gets what is left of it at start, minus ``close_margin`` seconds for the close, clamped by the
policy (``Policy.for_call``). A sandbox timeout is a ``fail()``, which is terminal: maxretries
only count server requeues, which happen when an executor dies or hangs past maxexectime, or
lets go a call that found no sandbox slot in time (ahead.py).

After an outage, the first successful assign triggers one look for assignments whose reply was
lost (intake.orphans). A process the executor cannot read (reply.py's limits) is failed as
``spec`` at once, by the id salvaged from its raw bytes. Worker threads are supervised: one that
dies is logged and restarted; too many deaths stop the executor with status 1. ``liveness``
says whether it takes work (``/healthz``). See docs/executor.md.

Latency: each worker thread waits one round trip for its assign and one for its close, so over
a WAN link a thread per sandbox slot leaves the slots idle most of the time. ``ahead`` more
threads keep assigns in flight: a call may wait for one of ``concurrency`` sandbox slots
(ahead.py), and that wait counts against its maxexectime. Threads assign only while a slot is
expected soon (ahead.py's rule); a call that still waits too long is let go for the server to
requeue when it can be retried, else it runs with what is left or fails as ``timeout``.

Lifecycle: :meth:`Executor.request_stop` (what signal handlers call: it only bumps a counter)
stops assigning and ends long-polls at once; in-flight calls get ``grace`` seconds, then they are
failed as ``interrupted``; a second request ends them at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ..colonies.reply import Unreadable
from ..colonies.spec import MAX_ARGS_TEXT_BYTES, parse_process
from ..engine.outcome import Outcome
from ..errors import (
    CodeUnavailable,
    ColoniesError,
    ColoniesRefused,
    ColoniesUnreachable,
    EngineError,
    FunctionNotFound,
    ReplyUnreadable,
    SpecError,
)
from ..kinds import ErrorKind
from .ahead import UNTIMED_S, Claim, Slots, can_retry, start_by
from .codestore import CodeStore
from .delivery import Backoff, Outbox, Reachability, Report
from .intake import lacks_env, orphans, reread_env, started_ago
from .liveness import Liveness
from .reports import failed_report, outcome_report
from .texts import for_log

log = logging.getLogger(__name__)

_RECENT = 1024  # process ids remembered as served (so a stale listing cannot adopt them)
FETCH_BUDGET_S = 10.0  # code fetch deadline of a call without maxexectime
MAX_RESTARTS = 5  # worker deaths within RESTART_WINDOW_S before the executor gives up
RESTART_WINDOW_S = 60.0


class SandboxLike(Protocol):
    def call(
        self,
        source: str,
        function: str,
        args: Any = (),
        kwargs: Any = None,
        maxexectime: float | None = None,
        *,
        element: bool = False,
    ) -> Outcome: ...


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
        self._closing = False
        self._signals = 0  # bumped by signal handlers, read by run()
        self._fatal: str | None = None
        self._lock = threading.Lock()
        self._inflight: dict[str, str] = {}  # processid -> function
        self._recent: OrderedDict[str, None] = OrderedDict()  # served lately, oldest first
        self._let_go: dict[str, float] = {}  # not started, left to requeue -> when it is requeued
        self._suspect = False  # an assign failed as unreachable: it may have assigned us one
        self._abandoned: set[str] = set()
        self._engine_errors = 0
        self._warned_zero = False
        self._restarts: list[float] = []
        self.max_args_bytes = max_args_bytes
        self.served = 0
        self.liveness = Liveness(
            self.concurrency + self.ahead,
            poll_s=assign_timeout + 20.0,
            call_s=max_call_s,
            clock=clock,
        )

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
                    len(self._inflight),
                    self.grace,
                )
            if stop_at is None:
                continue
            self.client.abort_assigns()  # repeated: a worker may have just entered a long-poll
            busy = bool(self._inflight) or self.outbox.pending() > 0
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
        self._closing = True
        with self._lock:
            pending = dict(self._inflight)
            self._abandoned.update(pending)
        for processid, function in pending.items():
            log.warning("call %s: %s interrupted by %s", processid, function, why)
            self.outbox.deliver(
                Report(
                    processid,
                    False,
                    [],
                    [
                        f"{ErrorKind.INTERRUPTED}: executor {self.name} stopped before the call "
                        f"finished ({why})"
                    ],
                )
            )
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
                self._unreadable(exc.fields.get("processid"), str(exc), "assign")
                continue
            except ColoniesUnreachable as exc:
                if self._stopping.is_set():
                    return
                self.reach.down(exc)
                self.liveness.reachable(False)
                self._suspect = True
                self._stopping.wait(backoff.next())
                continue
            except ColoniesRefused as exc:
                if exc.status == 403 and _denied(str(exc)):
                    self.reach.up()
                    self._fatal = f"assign refused: {exc}"
                    log.error(
                        "executor %s can no longer assign (%s): removed, rejected or "
                        "reaped as stale; stopping",
                        self.name,
                        exc,
                    )
                    return
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
            backoff.reset()
            if process is not None:
                beat(index, "serving")
                self._serve(process, claim=claim)
            if self._suspect and self._take_suspicion():
                beat(index, "serving")
                self._adopt_orphans()

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

    def _take_suspicion(self) -> bool:
        with self._lock:
            suspect, self._suspect = self._suspect, False
        return suspect

    def _adopt_orphans(self) -> None:
        """Serve processes assigned to us whose assign reply never arrived (intake.py)."""
        if not self.executor_id or not self.executor_type:
            return
        now = time.time()
        try:
            for processid, process, reason in orphans(
                self.client, self.executor_id, self.executor_type, self._known
            ):
                if self._stopping.is_set():
                    return
                if process is None:
                    self._unreadable(processid, reason, "listing")
                    continue
                log.warning(
                    "call %s: assigned to us while colonies was failing, but its "
                    "assign reply never came; serving it now",
                    processid,
                )
                self._serve(process, self._clock() - started_ago(process, now))
        except ColoniesError as exc:
            if isinstance(exc, ColoniesUnreachable):
                self._suspect = True  # look again after the next successful assign
            log.warning("could not look for calls assigned to us during the outage (%s)", exc)

    def _known(self, processid: str) -> bool:
        with self._lock:
            known = processid in self._inflight or processid in self._recent
            known = known or self._let_go.get(processid, -math.inf) > self._clock()
        return known or processid in self.outbox.pending_ids()

    def _unreadable(self, processid: str | None, reason: str, where: str) -> None:
        """Fail a process we cannot read (spec too deep, too large, not JSON) at once."""
        if not processid or not isinstance(processid, str):
            log.error(
                "%s reply unreadable (%s) and no process id could be read from it; the "
                "server requeues that process after its maxexectime",
                where,
                reason,
            )
            return
        with self._lock:
            if processid in self._inflight or processid in self._recent:
                return
            self._remember(processid)
        report = self._failed(
            processid, "?", ErrorKind.SPEC, f"process cannot be read: {reason}", self._clock()
        )
        self.outbox.deliver(report)

    def _serve(
        self, process: dict[str, Any], received: float | None = None, claim: Claim | None = None
    ) -> None:
        claim = self.slots.claim() if claim is None else claim
        try:
            self._serve_claimed(process, claim, self._clock() if received is None else received)
        finally:
            self.slots.unclaim(claim)

    def _serve_claimed(self, process: dict[str, Any], claim: Claim, received: float) -> None:
        processid = process.get("processid") if isinstance(process, dict) else None
        if not isinstance(processid, str) or not processid:
            log.error("assign returned a process without an id; ignored")
            return
        if self._closing:
            log.warning(
                "call %s: assigned during shutdown; left for the server to requeue", processid
            )
            return
        with self._lock:
            if processid in self._inflight:  # adopted by _adopt_orphans and assigned: serve it once
                return
            self._inflight[processid] = "?"
        try:
            report = self._run(processid, process, received, claim)
            with self._lock:
                if report is None or processid in self._abandoned:
                    return  # None: let go, never started (_no_slot)
            self.outbox.deliver(report)
            with self._lock:
                self.served += 1
        finally:
            with self._lock:
                self._inflight.pop(processid, None)
                self._remember(processid)

    def _remember(self, processid: str) -> None:
        """Note ``processid`` as served lately (call with the lock held)."""
        self._recent[processid] = None
        if len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def _run(
        self, processid: str, process: dict[str, Any], received: float, claim: Claim
    ) -> Report | None:
        function = "?"
        slot = None
        try:
            call = self._parse(processid, process)
            function = call.function
            with self._lock:
                self._inflight[processid] = function
            self._warn_zero(process)
            if call.source is not None:
                source = call.source
            else:
                limit = call.maxexectime - self.close_margin if call.maxexectime else FETCH_BUDGET_S
                if call.revision is not None:  # pinned by the submitter: exactly that revision
                    fileid, checksum = call.revision
                    source = self.code.get_revision(
                        function, fileid, checksum, deadline=received + limit
                    ).source
                else:
                    source = self.code.get(function, deadline=received + limit).source
            retry = can_retry(process)
            by = start_by(call.maxexectime, self.close_margin, retry)
            # Calls assigned ahead wait here, their budget running, at most until ``by``.
            slot = self.slots.acquire(
                claim,
                received + (call.maxexectime or UNTIMED_S),
                None if by is None else received + by - self._clock(),
            )
            budget = None
            if call.maxexectime is not None:
                budget = call.maxexectime - (self._clock() - received) - self.close_margin
                # Whole tenths (rounded down, so never more than is left): the sandbox caches
                # per-call limits by this value, and raw float budgets would never hit.
                budget = math.floor(budget * 10) / 10
            if slot is None or (budget is not None and budget <= 0):
                return self._no_slot(processid, function, call.maxexectime, retry, received)
            if call.wall is not None:  # the submitter's own limit (maxexectime leaves room)
                budget = call.wall if budget is None else min(budget, call.wall)
            if self.metrics is not None:
                with self.metrics.inflight():
                    outcome = self.sandbox.call(
                        source, function, call.args, call.kwargs, maxexectime=budget, element=True
                    )
            else:
                outcome = self.sandbox.call(
                    source, function, call.args, call.kwargs, maxexectime=budget, element=True
                )
            self._engine_errors = 0
        except SpecError as exc:
            return self._failed(processid, function, ErrorKind.SPEC, str(exc), received)
        except FunctionNotFound as exc:
            return self._failed(processid, function, ErrorKind.NOT_FOUND, str(exc), received)
        except CodeUnavailable as exc:
            return self._failed(processid, function, ErrorKind.UNAVAILABLE, str(exc), received)
        except EngineError as exc:
            self._engine_errors += 1
            if self._engine_errors >= 3:
                self._fatal = f"sandbox engine failing: {exc}"
                log.error("sandbox engine failed %d times in a row; stopping", self._engine_errors)
            return self._failed(
                processid, function, ErrorKind.CRASH, f"sandbox engine failed: {exc}", received
            )
        except Exception as exc:
            log.exception("call %s: internal error", processid)
            return self._internal_error(processid, function, exc, received)
        finally:
            if slot is not None:
                self.slots.release(slot)
        if call.revision is not None:  # a pinned call: logs say which revision ran
            function = f"{function}@{call.revision[0][:12]}"
        try:
            return self._report(processid, function, outcome)
        except Exception as exc:  # redteam: a report we cannot build fails that call only;
            # raised, it killed the worker and left the process running (6 stopped us)
            log.exception("call %s: internal error while reporting", processid)
            return self._internal_error(processid, function, exc, received)

    def _no_slot(
        self, processid: str, function: str, maxexectime: Any, retry: bool, received: float
    ) -> Report | None:
        """A call that got no sandbox slot in time: let go (None) when the server can retry
        it, else failed as ``timeout`` with the wait in the reason."""
        running, longest = self.slots.busy()
        why = (
            f"no sandbox slot freed in {self._clock() - received:.1f}s ({running} call(s) "
            f"running, the longest for {longest:.1f}s)"
        )
        if not retry:
            reason = f"maxexectime of {maxexectime}s used up before the call started: {why}"
            return self._failed(processid, function, ErrorKind.TIMEOUT, reason, received)
        log.warning(
            "call %s: %s not started: %s; left for the server, which requeues it at its "
            "maxexectime of %ss (one retry)",
            processid,
            function,
            why,
            maxexectime,
        )
        now = self._clock()
        with self._lock:  # until then it is RUNNING and ours: never adopt it (_known)
            self._let_go = {p: t for p, t in self._let_go.items() if t > now}
            self._let_go[processid] = received + (maxexectime or 0) + 5.0  # checked each 1 s
        return None

    def _parse(self, processid: str, process: dict[str, Any]) -> Any:
        """parse_process; inline code seen before its env was written is read again."""
        try:
            return parse_process(process, self.max_args_bytes)
        except SpecError:
            if not lacks_env(process):
                raise
        again = reread_env(self.client, processid, self._stopping.wait)
        return parse_process(again or process, self.max_args_bytes)

    def _report(self, processid: str, function: str, outcome: Outcome) -> Report:
        return outcome_report(processid, function, outcome, self.metrics)

    def _failed(
        self, processid: str, function: str, kind: ErrorKind, message: str, received: float
    ) -> Report:
        return failed_report(
            processid, function, kind, message, self._clock() - received, self.metrics
        )

    def _internal_error(
        self, processid: str, function: str, exc: Exception, received: float
    ) -> Report:
        """A fault of ours fails only that call, as ``crash`` with the exception's type."""
        message = f"internal executor error: {type(exc).__name__}: {for_log(exc)}"
        return self._failed(processid, function, ErrorKind.CRASH, message, received)

    def _warn_zero(self, process: dict[str, Any]) -> None:
        spec = process.get("spec")
        if not self._warned_zero and isinstance(spec, dict) and spec.get("maxexectime") == 0:
            self._warned_zero = True
            log.warning(
                "process %s has maxexectime 0: the server fails or requeues such "
                "processes about 1 s after assignment; submitters should send -1 or a "
                "positive number (logged once)",
                process.get("processid"),
            )


def _denied(message: str) -> bool:
    """Whether a 403 on assign is the server's verdict on this executor (removed, not approved,
    colony gone), as its membership check words it; only that stops the executor."""
    return "Access denied" in message or "does not exist" in message
