"""Red team: a report the executor cannot build fails that call, never the worker.

Before, ``_report`` ran outside the error handling of the call's run (``CallPath.run`` in
calling.py now): any exception while turning an Outcome into a report (a result the report
code could not read) killed the worker thread and left the process running on the server;
more than MAX_RESTARTS such calls in a minute stopped the executor, and the server then
handed the same process to the next executor.
"""

from __future__ import annotations

from typing import Any

import pytest

from faas_sandbox.executor import calling
from faas_sandbox.executor import loop as executor_module

from .test_executor import FakeColonies
from .test_executor_hostile import start, stop


def test_a_report_that_cannot_be_built_fails_its_call_and_the_executor_keeps_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("a result too deep for the report code")

    monkeypatch.setattr(calling, "outcome_report", broken)
    calls = executor_module.MAX_RESTARTS + 2
    client = FakeColonies()
    executor, thread, _ = start(client)
    try:
        for i in range(calls):
            client.submit(f"p{i}", {"function": "convert", "arg": "1"})
        ends = [c for c in client.wait_for(calls) if c[0] != "add_log"]
        assert executor._fatal is None
    finally:
        stop(executor, thread)
    assert sorted(c[1] for c in ends) == sorted(f"p{i}" for i in range(calls))
    for op, _pid, errors in ends:
        assert op == "fail"
        assert errors[0].startswith("crash: internal executor error: RecursionError")
