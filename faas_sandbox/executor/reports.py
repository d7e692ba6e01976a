"""What the executor tells the server about one call: a
:class:`~faas_sandbox.executor.delivery.Report` built from a sandbox Outcome or from one of our
own failure kinds (``interrupted`` too: a call in flight when the executor stopped waiting),
with its log line.

- success: ``out = [outcome.element]``, the output element the sandbox child encoded
  (element.py: the encoding rule, incl. lone surrogates), sent as its bytes, never
  decoded here; the process log gets the prints (if any) and a ``[faas-sandbox]`` usage line;
- failure: ``errors = ["<kind>: <message>"]`` (at most MAX_REASON_CHARS), with the prints and
  the reason in the process log. User text in our own log lines goes through ``for_log``.
"""

from __future__ import annotations

import logging
from typing import Any

from ..element import Unsendable
from ..engine.outcome import Outcome
from ..kinds import ErrorKind
from .delivery import Report
from .texts import for_log

log = logging.getLogger("faas_sandbox.executor.loop")

MAX_REASON_CHARS = 4000
_MIB = 1024 * 1024


def outcome_report(processid: str, function: str, outcome: Outcome, metrics: Any = None) -> Report:
    """The report of a call the sandbox ran."""
    usage = outcome.usage
    text = f"in {usage.wall_s:.3f}s cpu={usage.cpu_s:.3f}s rss={usage.max_rss_bytes / _MIB:.1f}MiB"
    out = None
    if outcome.ok:
        try:
            out = outcome.element  # the child's bytes; made here only for in-process values
        except Unsendable as exc:
            outcome = Outcome.failure(ErrorKind.OUTPUT, str(exc), outcome.stdout, usage)
        except (ValueError, RecursionError) as exc:
            # redteam: an Outcome whose value_json is not JSON (a forged frame, from a call
            # made without element=True) fails that call, never this worker.
            outcome = Outcome.failure(
                ErrorKind.CRASH,
                f"sent a malformed result (its value is not JSON: {type(exc).__name__})",
                outcome.stdout,
                usage,
            )
    if metrics is not None:
        metrics.observe(outcome, usage.wall_s)
    if outcome.ok:
        log.info("call %s: %s ok %s", processid, function, text)
        note = None
        if outcome.stdout:
            note = f"{outcome.stdout}{_nl(outcome.stdout)}[faas-sandbox] {function} ok {text}"
        return Report(processid, True, [out], [], note)
    reason = clip(outcome.reason)
    log.info("call %s: %s failed %s: %s", processid, function, text, for_log(reason))  # on kills
    # the sandbox has logged a WARNING already
    note = f"{outcome.stdout}{_nl(outcome.stdout)}[faas-sandbox] {function} failed {text}: {reason}"
    return Report(processid, False, [], [reason], note)


def failed_report(
    processid: str,
    function: str,
    kind: ErrorKind,
    message: str,
    seconds: float,
    metrics: Any = None,
) -> Report:
    """The report of a call failed by the executor itself (spec, not_found, unavailable...)."""
    reason = clip(f"{kind}: {message}")
    log.info("call %s: %s failed in %.3fs: %s", processid, function, seconds, for_log(reason))
    if metrics is not None:
        metrics.observe_kind(kind, seconds)
    return Report(processid, False, [], [reason], f"[faas-sandbox] {function} failed: {reason}")


def interrupted_report(processid: str, function: str, executor: str, why: str) -> Report:
    """The report of a call still in flight when ``executor`` stopped waiting for it."""
    log.warning("call %s: %s interrupted by %s", processid, function, why)
    reason = f"{ErrorKind.INTERRUPTED}: executor {executor} stopped before the call finished"
    return Report(processid, False, [], [f"{reason} ({why})"])


def clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def _nl(text: str) -> str:
    return "" if not text or text.endswith("\n") else "\n"
