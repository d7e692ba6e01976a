"""Calls as values: request limits, end-state classification, output decoding, waiting."""

from __future__ import annotations

from typing import Any

import pytest

from faas_sandbox.colonies.backend import ColoniesBackend
from faas_sandbox.colonies.calls import (
    EXEC_LIMIT_TEXT,
    WAIT_LIMIT_TEXT,
    CallRequest,
    CallResult,
    at_deadline,
    decode_output,
    make_request,
    parse_error,
    poll_until_final,
    run_call,
)
from faas_sandbox.colonies.spec import encode_result, parse_process
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable
from faas_sandbox.kinds import ProcessState
from faas_sandbox.policy import Limits, Policy

POLICY = Policy(limits=Limits(wall_seconds=10.0), functions={"fast": {"wall_seconds": 0.4}})


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("function", "requested", "expected"),
    [
        ("f", None, 11),
        ("f", 2.2, 4),
        ("f", 50, 11),
        ("fast", None, 2),
        ("f", 0.001, 2),
    ],
)
def test_maxexectime_is_the_wall_limit_plus_the_close_margin_rounded_up(
    function: str, requested: float | None, expected: int
) -> None:
    request = make_request(POLICY, function, maxexectime=requested, maxwaittime=4)
    assert request.maxexectime == expected
    assert request.maxwaittime == 4
    assert request.maxretries == 0
    assert request.deadline_seconds > request.maxwaittime + request.maxexectime


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("runtime: ValueError: x: y", "runtime"),
        ("forbidden: import of 'os' is not allowed", "forbidden"),
        ("not_found: no function 'x'", "not_found"),
        (WAIT_LIMIT_TEXT, "no_executor"),
        (EXEC_LIMIT_TEXT, "timeout"),
        ("Something Else happened", "failed"),
    ],
)
def test_parse_error_reads_the_kind(text: str, kind: str) -> None:
    assert parse_error(text)[0] == kind


def test_parse_error_keeps_the_message_after_the_kind() -> None:
    assert parse_error("runtime: ValueError: x: y") == ("runtime", "ValueError: x: y")


@pytest.mark.parametrize(
    "value",
    [
        69.8,
        3,
        "hello",
        "21",
        "",
        {"a": [1, 2]},
        [1, "x"],
        True,
        None,
        2**60,
        -(2**60),
    ],
)
def test_decode_output_undoes_the_executors_encode_result(value: Any) -> None:
    assert decode_output([encode_result(value)]) == [value]


def test_decode_output_leaves_nan_as_text_json_cannot_carry_it() -> None:
    assert decode_output(["NaN", "Infinity"]) == ["NaN", "Infinity"]


def read(state: ProcessState, out: Any = None, errors: Any = None, **kwargs: str) -> CallResult:
    return CallResult.from_process(
        {
            "processid": "p",
            "state": int(state),
            "out": out,
            "errors": errors,
            "spec": {"kwargs": kwargs},
        }
    )


def test_each_end_state_is_classified_once_read() -> None:
    ok = read(ProcessState.SUCCESS, ['{"a":1}'], function="f")
    assert (ok.kind, ok.output, ok.processid, ok.function) == ("ok", [{"a": 1}], "p", "f")
    failed = read(ProcessState.FAILED, [], ["memory: MemoryError"])
    assert (failed.kind, failed.message) == ("memory", "MemoryError")
    assert read(ProcessState.CANCELLED).kind == "cancelled"
    assert (read(ProcessState.FAILED).kind, read(ProcessState.FAILED).reasonless) == (
        "failed",
        True,
    )
    assert read(ProcessState.FAILED, errors="not a list").message == "failed without a reason"
    assert read(ProcessState.SUCCESS, out="not a list").output == []


def test_a_call_still_pending_at_our_deadline_is_no_executor_or_timeout() -> None:
    request = CallRequest("f")
    waiting, running = read(ProcessState.WAITING), read(ProcessState.RUNNING)
    assert (waiting.kind, waiting.final, running.kind, running.final) == ("", False, "", False)
    assert at_deadline(waiting, request).kind == "no_executor"
    assert at_deadline(running, request).kind == "timeout"
    assert at_deadline(running, request).message == (
        f"no result within {request.deadline_seconds:g} s"
    )
    done = read(ProcessState.CANCELLED)
    assert at_deadline(done, request) is done


def test_tutorial_output_is_passed_through_untouched() -> None:
    result = read(ProcessState.SUCCESS, [69.8, "[1]"], function="convert", arg="21")
    assert result.output == [69.8, "[1]"]


def test_the_status_body_shows_the_state_and_once_final_the_result() -> None:
    running = read(ProcessState.RUNNING, function="f", revision="file1")
    assert running.status_json() == {
        "processid": "p",
        "state": "running",
        "function": "f",
        "output": [],
        "kind": None,
        "message": None,
        "revision": "file1",
    }
    failed = read(ProcessState.FAILED, errors=["runtime: ValueError: x"], function="f")
    assert failed.status_json() == {
        "processid": "p",
        "state": "failed",
        "function": "f",
        "output": [],
        "kind": "runtime",
        "message": "ValueError: x",
        "revision": None,
    }


class RaisingBackend:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def submit(self, request: CallRequest) -> str:
        raise self.exc

    def wait(self, processid: str, timeout: float) -> CallResult:  # pragma: no cover
        raise AssertionError

    def logs(self, processid: str) -> list[str]:  # pragma: no cover
        return []

    def ping(self) -> None:  # pragma: no cover
        pass


def test_run_call_turns_colonies_faults_into_values() -> None:
    unreachable = run_call(RaisingBackend(ColoniesUnreachable("refused")), CallRequest("f"))
    assert (unreachable.kind, unreachable.processid) == ("unreachable", None)
    refused = run_call(RaisingBackend(ColoniesRefused("Access denied", 403)), CallRequest("f"))
    assert refused.kind == "refused"
    assert "Access denied" in refused.message


def test_poll_backs_off_from_5ms_to_100ms_and_stops_at_the_end_state() -> None:
    clock = FakeClock()
    states = iter([ProcessState.WAITING] * 8 + [ProcessState.RUNNING] * 3 + [ProcessState.SUCCESS])
    end = poll_until_final(lambda: read(next(states)), 30, clock=clock, sleep=clock.sleep)
    assert end.state is ProcessState.SUCCESS
    assert clock.sleeps[:6] == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.1])
    assert max(clock.sleeps) == pytest.approx(0.1)


def test_poll_returns_the_last_state_at_the_deadline() -> None:
    clock = FakeClock()
    end = poll_until_final(lambda: read(ProcessState.RUNNING), 1.0, clock=clock, sleep=clock.sleep)
    assert end.state is ProcessState.RUNNING
    assert clock.now == pytest.approx(101.0)


class FakeClient:
    colony = "dev"
    prvkey = "1" * 64

    def __init__(self) -> None:
        self.specs: list[dict[str, Any]] = []

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        self.specs.append(spec)
        return {"processid": "p" * 64}


@pytest.mark.parametrize("tutorial", [True, False])
def test_backend_spec_sets_every_limit_and_the_executor_can_parse_it(tutorial: bool) -> None:
    client = FakeClient()
    backend = ColoniesBackend(client, "my-type")  # type: ignore[arg-type]
    if tutorial:
        request = make_request(POLICY, "convert", (), {"arg": "21.0"}, tutorial=True)
    else:
        request = make_request(POLICY, "fast", (1, "x"), {"k": [1]}, maxwaittime=3)
    assert backend.submit(request) == "p" * 64
    (spec,) = client.specs
    assert spec["maxexectime"] == request.maxexectime >= 1
    assert spec["maxwaittime"] == request.maxwaittime >= 1
    assert spec["maxretries"] == 0
    assert spec["conditions"] == {
        "colonyname": "dev",
        "executortype": "my-type",
        "executornames": None,
    }
    call = parse_process({"processid": "p", "spec": spec})
    if tutorial:
        assert spec["kwargs"] == {
            "function": "convert",
            "arg": "21.0",
            "wall": repr(request.wall_seconds),
        }
        assert (call.form, call.args) == ("tutorial", (21.0,))
    else:
        assert (call.function, call.args, call.kwargs) == ("fast", (1, "x"), {"k": [1]})
        assert call.maxexectime == 2  # the wall limit + the executor's room to close
    assert call.wall == request.wall_seconds  # and the exact limit travels as kwargs.wall


def test_backend_ws_url_follows_the_clients_node() -> None:
    from faas_sandbox.colonies.client import ColoniesClient

    client = ColoniesClient.connect("127.0.0.1, 127.0.0.2:50081", 50080, False, "dev", "1" * 64)
    backend = ColoniesBackend(client)
    assert client.transport.pubsub_url() == (0, "ws://127.0.0.1:50080/pubsub")
    client.transport.node_failed(0, "test")
    assert backend.client.transport.pubsub_url() == (1, "ws://127.0.0.2:50081/pubsub")
    with pytest.raises(ValueError, match="unknown wait strategy"):
        ColoniesBackend(FakeClient(), strategy="nap")  # type: ignore[arg-type]
