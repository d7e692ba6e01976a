"""The way of one call through the executor, from a process in hand to its report in the outbox.

Per process (:meth:`CallPath.serve`): parse the spec (spec.py), fetch the code (codestore.py,
cached), wait for a sandbox slot (ahead.py), run it in a fresh sandboxed child with the time
left of the process's maxexectime, then report (reports.py, delivery.py):

- success: ``close(processid, [element])``, the result's output element as the sandbox child encoded
  it (``Sandbox.call(element=True)``), spliced into the close message undecoded;
- failure: ``fail(processid, ["<kind>: <message>"])`` with the sandbox's kind (``Outcome.reason``)
  or ours: ``spec``, ``not_found``, ``unavailable`` (code not fetchable and not cached),
  ``crash`` (engine fault, or a fault of ours: it fails that call only), ``timeout`` (no
  sandbox slot before the maxexectime was used up); ``interrupted`` is the loop's (loop.py);
- one ``add_log`` before the close, only when the call printed or failed: the prints, then a
  ``[faas-sandbox]`` line with the usage (wall, CPU, peak RSS). Every call's usage is in this
  process's own log line (``call <processid>: <function> ok in 0.003s cpu=... rss=...``), which
  costs no RPC: the server is the bottleneck, so the hot path is exactly assign + close.

Deadlines: a spec's maxexectime (> 0) is the server's deadline for the whole process; the call
gets what is left of it at start, minus ``close_margin`` seconds for the close, clamped by the
policy (``Policy.for_call``). A sandbox timeout is a ``fail()``, which is terminal: maxretries
only count server requeues, which happen when an executor dies or hangs past maxexectime, or
lets go a call that found no sandbox slot in time (then nothing is reported: ahead.py).

A process the executor cannot read (reply.py's limits) is failed as ``spec`` at once, by the id
salvaged from its raw bytes (:meth:`CallPath.unreadable`). Three engine faults in a row stop the
executor (``give_up``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

from ..colonies.spec import MAX_ARGS_TEXT_BYTES, parse_process
from ..engine.outcome import Outcome
from ..errors import CodeUnavailable, EngineError, FunctionNotFound, SpecError
from ..kinds import ErrorKind
from .ahead import UNTIMED_S, Claim, Slots, can_retry, start_by
from .codestore import CodeStore
from .delivery import Outbox, Report
from .intake import Reader, lacks_env, reread_env
from .ledger import Ledger
from .reports import failed_report, outcome_report
from .texts import for_log

log = logging.getLogger("faas_sandbox.executor.loop")  # the executor's log lines, one name

FETCH_BUDGET_S = 10.0  # code fetch deadline of a call without maxexectime


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


class CallPath:
    """Serves one process at a time per worker thread; shared by all of them."""

    def __init__(
        self,
        client: Reader,
        sandbox: SandboxLike,
        code: CodeStore,
        slots: Slots,
        outbox: Outbox,
        ledger: Ledger,
        *,
        give_up: Callable[[str], None],
        wait: Callable[[float], Any],
        clock: Callable[[], float],
        close_margin: float = 0.25,
        metrics: Any = None,
        max_args_bytes: int = MAX_ARGS_TEXT_BYTES,
    ) -> None:
        self.client, self.sandbox, self.code = client, sandbox, code
        self.slots, self.outbox, self.ledger = slots, outbox, ledger
        self.give_up = give_up  # the executor cannot go on: stop it, with this reason
        self.wait = wait  # sleeps, cut short when the executor stops
        self.close_margin, self.metrics = close_margin, metrics
        self.max_args_bytes = max_args_bytes
        self.closing = False  # the executor has failed its calls in flight: start no more
        self._clock = clock
        self._engine_errors = 0
        self._warned_zero = False

    def serve(
        self, process: dict[str, Any], received: float | None = None, claim: Claim | None = None
    ) -> None:
        """Serve ``process`` (received at ``received``, on the clock) with ``claim``, or with
        a claim taken now whatever the slots' rules say (an adopted orphan)."""
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
        if self.closing:
            log.warning(
                "call %s: assigned during shutdown; left for the server to requeue", processid
            )
            return
        if not self.ledger.start(processid):  # adopted as an orphan and assigned: serve it once
            return
        try:
            report = self.run(processid, process, received, claim)
            if report is None or self.ledger.abandoned(processid):
                return  # None: let go, never started (no_slot)
            self.outbox.deliver(report)
            self.ledger.count_served()
        finally:
            self.ledger.finish(processid)

    def unreadable(self, processid: str | None, reason: str, where: str) -> None:
        """Fail a process we cannot read (spec too deep, too large, not JSON) at once."""
        if not processid or not isinstance(processid, str):
            log.error(
                "%s reply unreadable (%s) and no process id could be read from it; the "
                "server requeues that process after its maxexectime",
                where,
                reason,
            )
            return
        if not self.ledger.first_sight(processid):
            return
        report = self.failed(
            processid, "?", ErrorKind.SPEC, f"process cannot be read: {reason}", self._clock()
        )
        self.outbox.deliver(report)

    def run(
        self, processid: str, process: dict[str, Any], received: float, claim: Claim
    ) -> Report | None:
        """The report of one call, or None when it was let go without starting."""
        function = "?"
        slot = None
        try:
            call = self.parse(processid, process)
            function = call.function
            self.ledger.name(processid, function)
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
                return self.no_slot(processid, function, call.maxexectime, retry, received)
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
            return self.failed(processid, function, ErrorKind.SPEC, str(exc), received)
        except FunctionNotFound as exc:
            return self.failed(processid, function, ErrorKind.NOT_FOUND, str(exc), received)
        except CodeUnavailable as exc:
            return self.failed(processid, function, ErrorKind.UNAVAILABLE, str(exc), received)
        except EngineError as exc:
            self._engine_errors += 1
            if self._engine_errors >= 3:
                self.give_up(f"sandbox engine failing: {exc}")
                log.error("sandbox engine failed %d times in a row; stopping", self._engine_errors)
            return self.failed(
                processid, function, ErrorKind.CRASH, f"sandbox engine failed: {exc}", received
            )
        except Exception as exc:
            log.exception("call %s: internal error", processid)
            return self.internal_error(processid, function, exc, received)
        finally:
            if slot is not None:
                self.slots.release(slot)
        if call.revision is not None:  # a pinned call: logs say which revision ran
            function = f"{function}@{call.revision[0][:12]}"
        try:
            return outcome_report(processid, function, outcome, self.metrics)
        except Exception as exc:  # redteam: a report we cannot build fails that call only;
            # raised, it killed the worker and left the process running (6 stopped us)
            log.exception("call %s: internal error while reporting", processid)
            return self.internal_error(processid, function, exc, received)

    def no_slot(
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
            return self.failed(processid, function, ErrorKind.TIMEOUT, reason, received)
        log.warning(
            "call %s: %s not started: %s; left for the server, which requeues it at its "
            "maxexectime of %ss (one retry)",
            processid,
            function,
            why,
            maxexectime,
        )
        # RUNNING and ours until the server requeues it at its deadline (checked each 1 s):
        # never adopt it before (Ledger.known).
        self.ledger.let_go(processid, received + (maxexectime or 0) + 5.0)
        return None

    def parse(self, processid: str, process: dict[str, Any]) -> Any:
        """parse_process; inline code seen before its env was written is read again."""
        try:
            return parse_process(process, self.max_args_bytes)
        except SpecError:
            if not lacks_env(process):
                raise
        again = reread_env(self.client, processid, self.wait)
        return parse_process(again or process, self.max_args_bytes)

    def failed(
        self, processid: str, function: str, kind: ErrorKind, message: str, received: float
    ) -> Report:
        """The report of a call failed by the executor itself, ``received`` on the clock."""
        return failed_report(
            processid, function, kind, message, self._clock() - received, self.metrics
        )

    def internal_error(
        self, processid: str, function: str, exc: Exception, received: float
    ) -> Report:
        """A fault of ours fails only that call, as ``crash`` with the exception's type."""
        message = f"internal executor error: {type(exc).__name__}: {for_log(exc)}"
        return self.failed(processid, function, ErrorKind.CRASH, message, received)

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
