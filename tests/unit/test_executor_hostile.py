"""The executor against hostile input from the server: unreadable processes, dying workers,
texts the server would refuse, results it would alter (fake client and sandbox)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest

from faas_sandbox.colonies.reply import Unreadable
from faas_sandbox.errors import ReplyUnreadable
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.executor.delivery import Outbox, Report
from faas_sandbox.executor.loop import Executor

from .test_executor import STORE, FakeColonies, FakeS3, FakeSandbox


def start(
    client: Any, sandbox: Any = None, **options: Any
) -> tuple[Executor, threading.Thread, dict[str, int]]:
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(
        client, sandbox or FakeSandbox(), code, name="t", concurrency=2, grace=1, **options
    )
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", executor.run()))
    thread.start()
    return executor, thread, result


def stop(executor: Executor, thread: threading.Thread) -> None:
    executor.request_stop()
    executor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def test_an_unreadable_assign_is_failed_as_spec_at_once_by_its_id():
    client = FakeColonies()
    client.assign_errors.append(
        ReplyUnreadable(
            "not valid JSON within limits: nested deeper than 64 levels", {"processid": "p-deep"}
        )
    )
    executor, thread, _ = start(client)
    try:
        calls = [c for c in client.wait_for(1) if c[0] != "add_log"]
        client.submit("p1", {"function": "convert", "arg": "21"})
        client.wait_for(2)
    finally:
        stop(executor, thread)
    assert calls == [
        (
            "fail",
            "p-deep",
            [
                "spec: process cannot be read: not valid JSON within "
                "limits: nested deeper than 64 levels"
            ],
        )
    ]
    assert ("close", "p1", [69.8]) in client.calls  # and the executor serves on


def test_an_unreadable_assign_without_an_id_is_logged_and_skipped(caplog):
    client = FakeColonies()
    client.assign_errors.append(ReplyUnreadable("assignprocessmsg reply over 16 bytes", {}))
    executor, thread, _ = start(client)
    try:
        client.submit("p1", {"function": "convert", "arg": "21"})
        client.wait_for(1)
    finally:
        stop(executor, thread)
    assert "no process id could be read" in caplog.text
    assert [c[0] for c in client.calls if c[0] != "add_log"] == ["close"]


class DyingColonies(FakeColonies):
    """assign hands out processes; add_log raises something no handler expects, N times."""

    def __init__(self, deaths: int) -> None:
        super().__init__()
        self.deaths = deaths

    def add_log(self, processid: str, message: str) -> None:
        if self.deaths > 0:
            self.deaths -= 1
            raise RecursionError("something nobody expected")
        super().add_log(processid, message)


def test_a_worker_that_dies_is_logged_once_and_restarted(caplog):
    # One worker and no assign-ahead: the calls after the death can only be served by the
    # restarted worker, so no wait below races the restart (each waits on the fake's
    # condition, bounded only to fail instead of hanging).
    client = DyingColonies(deaths=1)
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(client, FakeSandbox(), code, name="t", concurrency=1, ahead=0, grace=1)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", executor.run()))
    thread.start()
    try:
        client.submit("p1", {"function": "nothing_here"})  # fails: has a log -> dies
        for i in range(4):
            client.submit(f"q{i}", {"function": "convert", "arg": "0"})
        calls = client.wait_for(4, timeout=60)
    finally:
        stop(executor, thread)
    assert [c for c in calls if c[0] != "add_log"] == [("close", f"q{i}", [32.0]) for i in range(4)]
    assert len(re.findall(r"worker \d+ died", caplog.text)) == 1
    assert "worker 0 died (RecursionError: something nobody expected); restarting it" in caplog.text
    assert result["status"] == 0


def test_workers_that_keep_dying_stop_the_executor_non_zero(caplog):
    client = DyingColonies(deaths=10_000)
    executor, thread, result = start(client)
    try:
        for i in range(40):
            client.submit(f"p{i}", {"function": "nothing_here"})
        thread.join(30)
    finally:
        stop(executor, thread)
    assert result["status"] == 1
    assert "cannot recover" in caplog.text
    ok, details = executor.liveness.verdict()
    assert not ok and any("workers died" in p for p in details["problems"])


def test_liveness_names_a_stale_worker_and_an_outage():
    clock = [100.0]
    from faas_sandbox.executor.liveness import Liveness

    live = Liveness(2, poll_s=30, call_s=60, clock=lambda: clock[0])
    live.beat(0, "assigning")
    live.beat(1, "serving")
    assert live.verdict()[0]
    clock[0] += 45
    ok, details = live.verdict()
    assert not ok and details["problems"] == ["worker 0 assigning for 45s"]
    live.beat(0, "assigning")
    live.reachable(False)
    assert live.verdict()[1]["problems"] == ["colonies unreachable"]


class ListingColonies(FakeColonies):
    """After an outage the listing holds an unreadable process assigned to us."""

    def __init__(self, readable: bool) -> None:
        super().__init__()
        self.readable = readable

    def list_processes(self, state, count=100, executortype=""):
        return [Unreadable("cut short", {"processid": "p-big"})]

    def get_process(self, processid):
        if self.readable:
            return {
                "processid": processid,
                "assignedexecutorid": "me",
                "state": 1,
                "spec": {"funcname": "execute", "kwargs": {"function": "convert", "arg": "100"}},
            }
        raise ReplyUnreadable(
            "not valid JSON within limits: nested deeper than 64 levels",
            {"processid": processid, "assignedexecutorid": "me"},
        )


@pytest.mark.parametrize(
    ("readable", "expected"),
    [
        (True, ("close", "p-big", [212.0])),
        (
            False,
            (
                "fail",
                "p-big",
                [
                    "spec: process cannot be read: not valid JSON within limits: "
                    "nested deeper than 64 levels"
                ],
            ),
        ),
    ],
)
def test_orphan_adoption_reads_unreadable_listings_one_by_one(readable, expected):
    from faas_sandbox.errors import ColoniesUnreachable

    client = ListingColonies(readable)
    client.assign_errors.append(ColoniesUnreachable("connection reset by peer"))
    executor, thread, _ = start(client, executor_id="me", executor_type="faas-test")
    try:
        calls = [c for c in client.wait_for(1, timeout=10) if c[0] != "add_log"]
    finally:
        stop(executor, thread)
    assert calls == [expected]


def test_texts_sent_to_the_server_have_nul_and_surrogates_escaped():
    client = FakeColonies()
    outbox = Outbox(client)
    outbox.deliver(
        Report("p1", False, [], ["runtime: ValueError: a\x00b\ud800"], "printed \x00 here\n")
    )
    assert client.calls == [
        ("add_log", "p1", "printed \\x00 here\n"),
        ("fail", "p1", ["runtime: ValueError: a\\x00b\\ud800"]),
    ]


class RacingColonies(FakeColonies):
    """Assigns inline code before the server has written its env attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_process(self, processid):
        import base64

        self.reads += 1
        code = base64.b64encode(b"def convert(celsius):\n    return celsius + 1\n").decode()
        attributes = [{"key": "code", "value": code, "attributetype": 3}] if self.reads >= 2 else []
        return {
            "processid": processid,
            "attributes": attributes,
            "spec": {"funcname": "convert", "args": [1], "env": None},
        }


def test_inline_code_assigned_before_its_env_is_written_is_read_again():
    client = RacingColonies()
    executor, thread, _ = start(client)
    try:
        with client.lock:
            client.queue.append(
                {
                    "processid": "p-race",
                    "attributes": [],
                    "spec": {"funcname": "convert", "args": [1], "env": None},
                }
            )
            client.queue.append(
                {
                    "processid": "p-wrong",
                    "attributes": [{"key": "x"}],
                    "spec": {"funcname": "nope", "env": None},
                }
            )
        calls = [c for c in client.wait_for(2) if c[0] != "add_log"]
    finally:
        stop(executor, thread)
    assert ("close", "p-race", [2]) in calls
    assert client.reads == 2
    assert any(
        c[:2] == ("fail", "p-wrong") and c[2][0].startswith("spec: unknown funcname") for c in calls
    )


class UnreadableCloser(FakeColonies):
    """The server answers the log and the fail with bytes we cannot read."""

    def add_log(self, processid, message):
        super().add_log(processid, message)
        raise ReplyUnreadable("not valid JSON within limits: nested deeper than 64 levels")

    def fail(self, processid, errors):
        super().fail(processid, errors)
        raise ReplyUnreadable("not valid JSON within limits: nested deeper than 64 levels")


def test_an_unreadable_answer_to_a_log_or_fail_still_ends_the_delivery():
    client = UnreadableCloser()
    outbox = Outbox(client)
    assert outbox.deliver(Report("p1", False, [], ["runtime: x"], "printed\n")) is True
    assert [c[0] for c in client.calls] == ["add_log", "fail"]  # the fail went out too
    assert outbox.pending() == 0
