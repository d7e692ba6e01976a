"""The close/fail delivery queue against a fake client: retry unreachable, drop refused."""

from __future__ import annotations

import logging
import threading

import pytest

from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable
from faas_sandbox.executor.delivery import Backoff, Outbox, Reachability, Report


class FakeClient:
    """Records calls; ``script`` maps (method, pid) to a list of exceptions to raise first."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []
        self.script: dict[tuple[str, str], list[Exception]] = {}
        self.down = False

    def _do(self, method: str, pid: str, arg: object) -> None:
        if self.down:
            raise ColoniesUnreachable("connection refused")
        errors = self.script.get((method, pid))
        if errors:
            raise errors.pop(0)
        self.calls.append((method, pid, arg))

    def close(self, processid, out):
        self._do("close", processid, out)

    def fail(self, processid, errors):
        self._do("fail", processid, errors)

    def add_log(self, processid, message):
        self._do("add_log", processid, message)


def no_sleep(_: float) -> None:
    return None


def drain(outbox: Outbox) -> None:
    """Run the retrier until nothing is pending, then stop it."""
    thread = threading.Thread(target=outbox.run)
    thread.start()
    assert outbox.flush(5.0)
    outbox.stop()
    thread.join(5.0)


def test_success_is_one_close_and_no_log():
    client = FakeClient()
    outbox = Outbox(client, sleep=no_sleep)
    assert outbox.deliver(Report("p1", True, [69.8], []))
    assert client.calls == [("close", "p1", [69.8])]
    assert outbox.pending() == 0


def test_log_goes_before_close_and_failure_uses_fail():
    client = FakeClient()
    outbox = Outbox(client, sleep=no_sleep)
    assert outbox.deliver(Report("p1", False, [], ["runtime: boom"], "printed\n"))
    assert client.calls == [("add_log", "p1", "printed\n"), ("fail", "p1", ["runtime: boom"])]


def test_refused_close_is_dropped_not_retried(caplog):
    client = FakeClient()
    client.script[("close", "p1")] = [ColoniesRefused("process is not assigned", 403)]
    outbox = Outbox(client, sleep=no_sleep)
    with caplog.at_level(logging.WARNING):
        assert outbox.deliver(Report("p1", True, [1], []))
    assert client.calls == []
    assert outbox.pending() == 0
    assert outbox.dropped == 1
    assert "refused by the server, dropped" in caplog.text


def test_refused_log_still_closes():
    client = FakeClient()
    client.script[("add_log", "p1")] = [ColoniesRefused("too big", 400)]
    outbox = Outbox(client, sleep=no_sleep)
    assert outbox.deliver(Report("p1", True, [1], [], "x"))
    assert client.calls == [("close", "p1", [1])]


def test_unreachable_close_is_queued_and_retried_until_delivered():
    client = FakeClient()
    client.script[("close", "p1")] = [ColoniesUnreachable("reset")] * 3
    outbox = Outbox(client, sleep=no_sleep)
    assert not outbox.deliver(Report("p1", True, [1], []))
    assert outbox.pending_ids() == ["p1"]
    drain(outbox)
    assert client.calls == [("close", "p1", [1])]
    assert outbox.delivered == 1


def test_log_is_not_sent_twice_when_only_the_close_was_unreachable():
    client = FakeClient()
    client.script[("fail", "p1")] = [ColoniesUnreachable("reset")]
    outbox = Outbox(client, sleep=no_sleep)
    assert not outbox.deliver(Report("p1", False, [], ["timeout: 1s"], "log"))
    drain(outbox)
    assert client.calls == [("add_log", "p1", "log"), ("fail", "p1", ["timeout: 1s"])]


def test_reports_queue_up_behind_pending_ones_in_order_while_down():
    client = FakeClient()
    client.down = True
    outbox = Outbox(client, sleep=no_sleep)
    for pid in ("p1", "p2", "p3"):
        assert not outbox.deliver(Report(pid, True, [pid], []))
    assert outbox.pending_ids() == ["p1", "p2", "p3"]
    client.down = False
    drain(outbox)
    assert [pid for _, pid, _ in client.calls] == ["p1", "p2", "p3"]


def test_a_report_that_keeps_failing_does_not_hold_up_the_others(caplog):
    client = FakeClient()
    client.script[("close", "p1")] = [ColoniesUnreachable("i/o timeout")] * 3
    outbox = Outbox(client, sleep=no_sleep)
    client.down = True
    for pid in ("p1", "p2", "p3"):
        outbox.deliver(Report(pid, True, [pid], []))
    client.down = False
    thread = threading.Thread(target=outbox.run)
    with caplog.at_level(logging.WARNING):
        thread.start()
        assert outbox.flush(5.0)
        outbox.stop()
        thread.join(5.0)
    assert [pid for _, pid, _ in client.calls] == ["p2", "p3", "p1"]
    assert caplog.text.count("3 queued result(s) delivered late") == 1


def test_refusal_after_unreachable_drops_the_report():
    client = FakeClient()
    client.script[("fail", "p1")] = [
        ColoniesUnreachable("timeout"),
        ColoniesRefused("Tried to set failed process as failed", 400),
    ]
    outbox = Outbox(client, sleep=no_sleep)
    outbox.deliver(Report("p1", False, [], ["spec: bad"]))
    drain(outbox)
    assert client.calls == []
    assert outbox.dropped == 1


def test_stop_leaves_undeliverable_reports_pending():
    client = FakeClient()
    client.down = True
    outbox = Outbox(client)
    outbox.deliver(Report("p1", True, [1], []))
    thread = threading.Thread(target=outbox.run)
    thread.start()
    assert not outbox.flush(0.2)
    outbox.stop()
    thread.join(5.0)
    assert not thread.is_alive()
    assert outbox.pending_ids() == ["p1"]


def test_reachability_logs_once_per_state_change(caplog):
    reach = Reachability()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            reach.down(ColoniesUnreachable("refused"))
        for _ in range(5):
            reach.up()
        reach.down(ColoniesUnreachable("refused"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "colonies unreachable (refused), retrying",
        "colonies reachable again",
        "colonies unreachable (refused), retrying",
    ]


@pytest.mark.parametrize("rand", [0.0, 1.0])
def test_backoff_doubles_to_its_cap_with_jitter(rand):
    backoff = Backoff(initial=0.1, maximum=1.0, rand=lambda: rand)
    delays = [backoff.next() for _ in range(6)]
    factor = 0.5 + rand / 2
    assert delays == pytest.approx([d * factor for d in (0.1, 0.2, 0.4, 0.8, 1.0, 1.0)])
    backoff.reset()
    assert backoff.next() == pytest.approx(0.1 * factor)


NOT_A_MEMBER = "Access denied, not a member of Colony with name <dev>"


def test_a_not_a_member_refusal_is_retried_and_a_close_that_then_goes_through_counts(caplog):
    """Colonies v1.9.12 also says "not a member" while its PostgreSQL restarts: the close is
    kept and retried, not dropped."""
    client = FakeClient()
    client.script[("close", "p1")] = [ColoniesRefused(NOT_A_MEMBER, 403)] * 3
    outbox = Outbox(client, sleep=no_sleep, confirm_s=60.0)
    with caplog.at_level(logging.WARNING):
        assert not outbox.deliver(Report("p1", True, [1], []))
        drain(outbox)
    assert client.calls == [("close", "p1", [1])]
    assert (outbox.delivered, outbox.dropped) == (1, 0)
    assert caplog.text.count("while its database restarts") == 1


def test_a_not_a_member_refusal_that_lasts_the_confirm_window_drops_the_report():
    now = [0.0]
    client = FakeClient()
    client.script[("close", "p1")] = [ColoniesRefused(NOT_A_MEMBER, 403)] * 10

    def sleep(seconds: float) -> None:
        now[0] += 1.0  # each retry one second later

    outbox = Outbox(client, sleep=sleep, clock=lambda: now[0], confirm_s=3.0)
    assert not outbox.deliver(Report("p1", True, [1], []))
    drain(outbox)
    assert client.calls == []
    assert (outbox.delivered, outbox.dropped) == (0, 1)
    # refused at 0 s (deliver), then by the retrier at 0, 1 and 2 s; dropped at 3 s
    assert len(client.script[("close", "p1")]) == 10 - 5
