"""Red-team regressions: what a tenant's result can do to the long-lived processes after it.

The engine hands a result's JSON bytes on untouched; the executor (parent, one per host,
shared by every tenant) then turns them into the Colonies ``out`` element, and the front
door decodes that element again. Both are long-lived: one call's result must never raise
out of them. Before the fix, a *plain string* of 100,000 ``[`` (no escape needed) made
``spec.encode_result`` raise RecursionError in the executor's worker thread: the report
was never delivered and the worker died; six such calls in a minute stopped the executor,
and the server then handed the same process to the next executor.
"""

from __future__ import annotations

import json

import pytest

from faas_sandbox import ErrorKind, Sandbox
from faas_sandbox.executor.reports import outcome_report
from faas_sandbox.colonies.spec import decode_result, encode_result

DEEP_TEXTS = ["[" * 100_000, '{"a":' * 50_000, "[" * 5000 + "]" * 5000]


@pytest.mark.parametrize("text", DEEP_TEXTS, ids=["brackets", "objects", "balanced"])
def test_a_string_too_deep_to_parse_travels_as_json_text_and_comes_back_as_itself(
        text: str) -> None:
    encoded = encode_result(text)
    assert encoded == json.dumps(text)  # encoded, so the decoder never sees it raw
    assert decode_result(encoded) == text
    assert decode_result(text) == text  # raw (an old executor, a tutorial): itself


def test_a_function_returning_brackets_is_reported_not_raised(engine: Sandbox) -> None:
    out = engine.call("def f():\n    return '[' * 50000\n", "f")
    assert out.ok, out
    report = outcome_report("pid-1", "f", out)
    assert report.ok and report.errors == []
    assert decode_result(report.out[0]) == "[" * 50_000


def test_a_forged_value_from_an_escaped_child_fails_that_call(engine: Sandbox) -> None:
    out = engine._probe("forged_value")  # a well-formed ok frame, value not JSON
    assert out.ok and out.value_json == b"[" * 50_000  # the engine never decodes it
    report = outcome_report("pid-2", "f", out)
    assert not report.ok and report.out == []
    assert report.errors == [f"{ErrorKind.CRASH}: sent a malformed result (its value is "
                             "not JSON: RecursionError)"]
