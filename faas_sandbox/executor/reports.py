"""What the executor tells the server about one call: a :class:`~faas_sandbox.executor.delivery.Report`
built from a sandbox Outcome or from one of our own failure kinds, with its log line.

- success: ``out = [encode_result(value)]``; the process log gets the prints (if any) and a
  ``[faas-sandbox]`` usage line;
- a plain string result holding a lone surrogate fails ``output`` (the server would turn it
  into U+FFFD); structured results carry it as a JSON ``\\ud800`` escape, unchanged;
- failure: ``errors = ["<kind>: <message>"]`` (at most MAX_REASON_CHARS), with the prints and
  the reason in the process log. User text in our own log lines goes through ``for_log``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .delivery import Report
from ..engine.outcome import ErrorKind, Outcome
from ..colonies.spec import encode_result
from .texts import for_log, for_server, has_surrogate

log = logging.getLogger("faas_sandbox.executor.loop")

MAX_REASON_CHARS = 4000
_MIB = 1024 * 1024


def outcome_report(pid: str, function: str, outcome: Outcome, metrics: Any = None) -> Report:
    """The report of a call the sandbox ran."""
    usage = outcome.usage
    text = (f"in {usage.wall_s:.3f}s cpu={usage.cpu_s:.3f}s "
            f"rss={usage.max_rss_bytes / _MIB:.1f}MiB")
    out = None
    if outcome.ok:
        try:
            out = out_element(outcome.value_json)
        except (ValueError, RecursionError) as exc:
            # redteam: a child's encoder only writes JSON; a value that is not JSON (e.g. 10^5
            # brackets) means the child escaped and forged its frame. Fail that call, never
            # this worker (an exception here used to kill it; six stopped the executor).
            outcome = Outcome.failure(ErrorKind.CRASH, "sent a malformed result (its value "
                                      f"is not JSON: {type(exc).__name__})", outcome.stdout,
                                      usage)
    if isinstance(out, str) and has_surrogate(out):  # the server would make it U+FFFD
        outcome = Outcome.failure(ErrorKind.OUTPUT, "result is a string holding a lone "
                                  "surrogate (not valid Unicode text), which cannot be "
                                  "delivered unchanged", outcome.stdout, usage)
    if metrics is not None:
        metrics.observe(outcome, usage.wall_s)
    if outcome.ok:
        log.info("call %s: %s ok %s", pid, function, text)
        note = None
        if outcome.stdout:
            note = f"{outcome.stdout}{_nl(outcome.stdout)}[faas-sandbox] {function} ok {text}"
        return Report(pid, True, [out], [], note)
    reason = clip(outcome.reason)
    log.info("call %s: %s failed %s: %s", pid, function, text, for_log(reason))  # on kills
    # the sandbox has logged a WARNING already
    note = f"{outcome.stdout}{_nl(outcome.stdout)}[faas-sandbox] {function} failed {text}: " \
           f"{reason}"
    return Report(pid, False, [], [reason], note)


def out_element(value_json: bytes) -> str | int | float:
    """The ``out`` element of a result, from the JSON bytes the child encoded.

    A list or dict (the only values that nest or grow large) travels as the child's own JSON
    text, never decoded in this long-lived process (redteam: decoding and re-encoding a 1 MiB
    result held the GIL for ~100 ms, delaying every other call). It equals what
    :func:`~faas_sandbox.colonies.spec.encode_result` writes, except that non-ASCII characters stay
    UTF-8 instead of ``\\u`` escapes (the same JSON value). A scalar is one flat token.
    """
    if value_json[:1] in (b"[", b"{"):
        # A child escapes lone surrogates itself; an in-process Outcome's value_json carries
        # them raw (surrogatepass): escape them the same way (valid JSON text holds no NUL).
        return for_server(value_json.decode("utf-8", "surrogatepass"))
    return encode_result(json.loads(value_json))


def failed_report(pid: str, function: str, kind: str, message: str, seconds: float,
                  metrics: Any = None) -> Report:
    """The report of a call failed by the executor itself (spec, not_found, unavailable...)."""
    reason = clip(f"{kind}: {message}")
    log.info("call %s: %s failed in %.3fs: %s", pid, function, seconds, for_log(reason))
    if metrics is not None:
        metrics.observe_kind(kind, seconds)
    return Report(pid, False, [], [reason], f"[faas-sandbox] {function} failed: {reason}")


def clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def _nl(text: str) -> str:
    return "" if not text or text.endswith("\n") else "\n"
