"""The pull loop against a fake Colonies client and a fake sandbox (no fork, no server)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from faas_sandbox.colonies.spec import encode_call_kwargs
from faas_sandbox.element import Element
from faas_sandbox.engine.outcome import ErrorKind, Outcome, Usage
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable, EngineError
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.executor.loop import Executor
from faas_sandbox.settings import S3Settings

STORE = S3Settings(endpoint="s3:1", bucket="b")
CONVERT = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"


class FakeColonies:
    """Hands out queued processes; records close/fail/add_log in order."""

    colony = "dev"

    def __init__(self) -> None:
        self.queue: list[Any] = []
        self.calls: list[tuple[str, str, Any]] = []
        self.files = {
            "convert": CONVERT,
            "chatty": "def chatty():\n    return 1\n",
            "block": "def block():\n    return 1\n",
        }
        self.assign_errors: list[Exception] = []
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.aborts = 0

    def submit(self, pid: str, kwargs: dict | None = None, **spec: Any) -> None:
        with self.lock:
            self.queue.append(
                {"processid": pid, "spec": {"funcname": "execute", "kwargs": kwargs, **spec}}
            )

    def assign(self, timeout: int) -> dict | None:
        with self.lock:
            if self.assign_errors:
                raise self.assign_errors.pop(0)
            if self.queue:
                return self.queue.pop(0)
        time.sleep(0.01)
        return None

    def abort_assigns(self) -> None:
        """The executor calls this on every turn of its stop loop: a count the tests wait on."""
        with self.lock:
            self.aborts += 1
            self.done.notify_all()

    def wait_aborts(self, count: int, timeout: float = 5.0) -> bool:
        with self.lock:
            return self.done.wait_for(lambda: self.aborts >= count, timeout)

    def _record(self, *call: Any) -> None:
        with self.lock:
            self.calls.append(call)
            self.done.notify_all()

    def close(self, processid, out):
        # the executor sends the sandbox's output elements as bytes; read them as the server
        self._record(
            "close", processid, [json.loads(x) if isinstance(x, Element) else x for x in out]
        )

    def fail(self, processid, errors):
        self._record("fail", processid, errors)

    def add_log(self, processid, message):
        self._record("add_log", processid, message)

    def get_file(self, label, name):
        if name not in self.files:
            raise ColoniesRefused("Failed to get file", 404)
        checksum = hashlib.sha256(self.files[name].encode()).hexdigest()
        return [
            {
                "fileid": name,
                "checksum": checksum,
                "size": 1,
                "ref": {"s3object": {"server": "s3", "port": 1, "bucket": "b", "object": name}},
            }
        ]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[tuple[str, str, Any]]:
        with self.lock:
            self.done.wait_for(
                lambda: len([c for c in self.calls if c[0] != "add_log"]) >= count, timeout
            )
            return list(self.calls)


class FakeS3:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def fetch(self, key, *, deadline, max_bytes):
        return self.files[key].encode()


class FakeSandbox:
    """Runs trusted test code in-process; ``block`` waits on an event; ``chatty`` prints."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.budgets: list[float | None] = []
        self.raise_engine = False

    def call(
        self, source, function, args=(), kwargs=None, maxexectime=None, *, element=False
    ) -> Outcome:
        assert element  # the executor always asks for the output element
        self.budgets.append(maxexectime)
        if self.raise_engine:
            raise EngineError("forker died")
        usage = Usage(0.002, 0.001, 10 * 2**20)
        if function == "block":
            self.release.wait(10)
            return Outcome(True, 1, usage=usage)
        if function == "chatty":
            return Outcome(True, 1, stdout="hello\n", usage=usage)
        namespace: dict[str, Any] = {}
        exec(source, namespace)
        try:
            return Outcome(True, namespace[function](*args, **(kwargs or {})), usage=usage)
        except Exception as exc:  # noqa: BLE001 - the function under test may raise anything
            return Outcome.failure(ErrorKind.RUNTIME, f"{type(exc).__name__}: {exc}", "", usage)


@pytest.fixture
def setup():
    client = FakeColonies()
    sandbox = FakeSandbox()
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(client, sandbox, code, name="test-exec", concurrency=2, grace=5.0)
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", executor.run()))
    thread.start()
    yield client, sandbox, executor
    sandbox.release.set()
    executor.request_stop()
    executor.request_stop()
    thread.join(10)
    assert not thread.is_alive()


def test_tutorial_process_closes_with_the_float_result(setup):
    client, _, _ = setup
    client.submit("p1", {"function": "convert", "arg": "21"})
    assert client.wait_for(1) == [("close", "p1", [69.8])]


def test_json_args_and_other_kinds_of_failure(setup):
    client, _, _ = setup
    client.submit("p1", encode_call_kwargs("convert", [100]))
    client.submit("p2", {"function": "convert", "arg": "warm"})
    client.submit("p3", {"function": "missing", "arg": "1"})
    client.submit("p4", encode_call_kwargs("convert", ["x"]))
    calls = {pid: (kind, arg) for kind, pid, arg in client.wait_for(4) if kind != "add_log"}
    assert calls["p1"] == ("close", [212.0])
    assert calls["p2"] == ("fail", ["spec: kwargs.arg is not a number: 'warm'"])
    assert calls["p3"][0] == "fail" and calls["p3"][1][0].startswith("not_found: no function")
    assert calls["p4"][0] == "fail" and calls["p4"][1][0].startswith("runtime: TypeError")


def test_prints_go_to_the_process_log_before_the_close(setup):
    client, _, _ = setup
    client.submit("p1", {"function": "chatty"})
    calls = client.wait_for(1)
    assert [c[0] for c in calls] == ["add_log", "close"]
    assert calls[0][2].startswith(
        "hello\n[faas-sandbox] chatty ok in 0.002s cpu=0.001s rss=10.0MiB"
    )


def test_maxexectime_becomes_the_time_left_minus_the_close_margin(setup):
    client, sandbox, _ = setup
    client.submit("p1", {"function": "convert", "arg": "1"}, maxexectime=3)
    client.submit("p2", {"function": "convert", "arg": "1"}, maxexectime=-1)
    client.wait_for(2)
    budget, default = sorted(sandbox.budgets, key=lambda b: b is None)
    assert 2.5 < budget <= 2.75
    assert default is None


def test_the_submitters_wall_limit_caps_the_budget(setup):
    client, sandbox, _ = setup
    client.submit("p1", {"function": "convert", "arg": "1", "wall": "1.0"}, maxexectime=2)
    client.wait_for(1)
    assert sandbox.budgets == [1.0]  # not 2 - close margin: exactly what was asked for


def test_a_malformed_process_never_stops_the_executor(setup):
    client, _, _ = setup
    with client.lock:
        client.queue += [{"no": "id"}, {"processid": "p0", "spec": "junk"}, "not a dict"]
    client.submit("p1", {"function": "convert", "arg": "0"})
    calls = [c for c in client.wait_for(2) if c[0] != "add_log"]
    assert calls[0] == ("fail", "p0", ["spec: process has no spec"])
    assert calls[1] == ("close", "p1", [32.0])


def test_unreachable_assign_backs_off_and_logs_once(caplog):
    client, sandbox = FakeColonies(), FakeSandbox()
    client.assign_errors += [ColoniesUnreachable("refused")] * 4  # both workers fail twice
    client.submit("p1", {"function": "convert", "arg": "0"})
    with caplog.at_level(logging.WARNING):
        executor, _, thread = run_executor(client, sandbox, grace=1)
        assert ("close", "p1", [32.0]) in client.wait_for(1, timeout=10)
        executor.request_stop()
        thread.join(5)
    assert caplog.text.count("colonies unreachable") == 1
    assert caplog.text.count("colonies reachable again") == 1


def test_a_403_that_is_no_verdict_on_us_does_not_stop_the_executor(caplog):
    """Colonies answers 403 with its database's error text while PostgreSQL restarts (the
    membership check fails); only "Access denied"/"does not exist" mean we were removed."""
    client, sandbox = FakeColonies(), FakeSandbox()
    client.assign_errors += [ColoniesRefused("unexpected failure in membership check", 403)] * 2
    client.submit("p1", {"function": "convert", "arg": "0"})
    with caplog.at_level(logging.WARNING):
        executor, result, thread = run_executor(client, sandbox, grace=1)
        assert ("close", "p1", [32.0]) in client.wait_for(1, timeout=10)
        executor.request_stop()
        thread.join(5)
    assert result["status"] == 0
    assert caplog.text.count("colonies unreachable") == 1
    assert "can no longer assign" not in caplog.text


class OrphanColonies(FakeColonies):
    """A server that assigned p-orphan to us while the assign request failed (its database
    went away after the assignment was committed): only getprocessesmsg shows it."""

    def __init__(self) -> None:
        super().__init__()
        self.listings = 0
        kwargs = {"function": "convert", "arg": "100"}
        started = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        self.running = [
            {
                "processid": "p-orphan",
                "assignedexecutorid": "me",
                "starttime": started,
                "spec": {"funcname": "execute", "kwargs": kwargs, "maxexectime": 60},
            },
            {
                "processid": "p-theirs",
                "assignedexecutorid": "someone else",
                "spec": {"funcname": "execute", "kwargs": kwargs},
            },
        ]

    def list_processes(self, state, count=100, executortype=""):
        assert (state, executortype) == (1, "faas-test")
        self.listings += 1
        return list(self.running)


def test_calls_assigned_to_us_during_an_outage_are_found_and_served():
    client, sandbox = OrphanColonies(), FakeSandbox()
    client.assign_errors.append(ColoniesUnreachable("connection reset by peer"))
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(
        client,
        sandbox,
        code,
        name="t",
        concurrency=1,
        grace=1,
        executor_id="me",
        executor_type="faas-test",
    )
    thread = threading.Thread(target=executor.run)
    thread.start()
    try:
        calls = [c for c in client.wait_for(1, timeout=10) if c[0] != "add_log"]
        assert calls == [("close", "p-orphan", [212.0])]
        client.submit("p1", {"function": "convert", "arg": "0"})
        client.wait_for(2, timeout=10)
    finally:
        executor.request_stop()
        thread.join(5)
    assert not thread.is_alive()  # run() returns after its workers: nothing can follow
    closed = [c[1] for c in client.calls if c[0] == "close"]
    assert closed == ["p-orphan", "p1"]  # adopted once; never someone else's
    assert client.listings == 1  # one look after the outage, not on every assign
    assert 58.0 < sandbox.budgets[0] < 59.0  # maxexectime 60, started 1 s ago, close margin


def test_engine_error_fails_the_call_as_crash(setup):
    client, sandbox, _ = setup
    sandbox.raise_engine = True
    client.submit("p1", {"function": "convert", "arg": "0"})
    calls = [c for c in client.wait_for(1) if c[0] != "add_log"]
    assert calls == [("fail", "p1", ["crash: sandbox engine failed: forker died"])]


def run_executor(
    client: FakeColonies,
    sandbox: FakeSandbox,
    grace: float,
    clock: Any = time.monotonic,
    **options: Any,
) -> tuple[Executor, dict, Any]:
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(
        client, sandbox, code, name="t", concurrency=2, grace=grace, clock=clock, **options
    )
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("status", executor.run()))
    thread.start()
    return executor, result, thread


def wait_inflight(executor: Executor, busy: bool = True) -> None:
    deadline = time.monotonic() + 5
    while (executor.ledger.in_flight() > 0) != busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (executor.ledger.in_flight() > 0) == busy


def test_first_stop_lets_the_call_in_flight_finish():
    client, sandbox = FakeColonies(), FakeSandbox()
    executor, result, thread = run_executor(client, sandbox, grace=5.0, clock=lambda: 100.0)
    client.submit("p1", {"function": "block"})
    wait_inflight(executor)
    executor.request_stop()
    # The stop loop calls abort_assigns on every turn; a second turn means the first one saw
    # p1 in flight and kept waiting (the frozen clock never lets the grace period run out).
    assert client.wait_aborts(2)
    assert thread.is_alive()  # still waiting for p1
    sandbox.release.set()
    thread.join(5)
    assert result["status"] == 0
    assert client.calls == [("close", "p1", [1])]


def test_grace_expiry_fails_the_call_in_flight_with_a_reason():
    client, sandbox = FakeColonies(), FakeSandbox()
    executor, result, thread = run_executor(client, sandbox, grace=0.3)
    client.submit("p1", {"function": "block"})
    wait_inflight(executor)
    executor.request_stop()
    thread.join(5)
    assert result["status"] == 0
    assert client.calls == [
        (
            "fail",
            "p1",
            ["interrupted: executor t stopped before the call finished (the 0.3s grace period)"],
        )
    ]
    sandbox.release.set()
    wait_inflight(executor, busy=False)  # the worker has finished with p1
    assert len(client.calls) == 1  # the late result is not delivered
    assert executor.served == 0 and executor.outbox.pending() == 0


def test_second_stop_ends_the_call_at_once():
    client, sandbox = FakeColonies(), FakeSandbox()
    executor, _result, thread = run_executor(client, sandbox, grace=60)
    client.submit("p1", {"function": "block"})
    wait_inflight(executor)
    started = time.monotonic()
    executor.request_stop()
    executor.request_stop()
    thread.join(5)
    assert time.monotonic() - started < 2
    assert client.calls[0][0] == "fail" and "a second stop request" in client.calls[0][2][0]
    sandbox.release.set()


@pytest.mark.parametrize(
    "message",
    [
        "Access denied, not a member of Colony with name <dev>",
        "Access denied, Executor with Id <abc> is not approved",
        "Colony <dev> does not exists",
    ],
)
def test_an_assign_denied_for_the_whole_confirm_window_stops_the_executor_with_status_1(
    message, caplog
):
    client, sandbox = FakeColonies(), FakeSandbox()
    client.assign_errors += [ColoniesRefused(message, 403)] * 100
    with caplog.at_level(logging.WARNING):
        _executor, result, thread = run_executor(client, sandbox, grace=1, deny_confirm_s=0.4)
        thread.join(10)
    assert result["status"] == 1
    assert caplog.text.count("stopping unless an assign succeeds") == 1
    assert "can no longer assign" in caplog.text


def test_a_denial_that_passes_before_the_confirm_window_does_not_stop_the_executor(caplog):
    """Colonies v1.9.12 also answers "Access denied, not a member" while its PostgreSQL
    restarts (its lookup ignores the rows' error): a denial followed by a successful assign
    was no verdict."""
    client, sandbox = FakeColonies(), FakeSandbox()
    denied = ColoniesRefused("Access denied, not a member of Colony with name <dev>", 403)
    client.assign_errors += [denied] * 2
    client.submit("p1", {"function": "convert", "arg": "0"})
    with caplog.at_level(logging.WARNING):
        executor, result, thread = run_executor(client, sandbox, grace=1, deny_confirm_s=60)
        assert ("close", "p1", [32.0]) in client.wait_for(1, timeout=10)
        executor.request_stop()
        thread.join(5)
    assert result["status"] == 0
    assert executor.denials.denied() == (True, False)  # cleared by the assign that went through
    assert "can no longer assign" not in caplog.text


class CountingSandbox(FakeSandbox):
    """Also counts how many calls run at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0
        self.count_lock = threading.Lock()

    def call(self, *args: Any, **kwargs: Any) -> Outcome:
        with self.count_lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return super().call(*args, **kwargs)
        finally:
            with self.count_lock:
                self.running -= 1


class AssignRecorder(FakeColonies):
    """Also records how many calls were running when each process was assigned."""

    def __init__(self, sandbox: CountingSandbox) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.running_at_assign: list[int] = []

    def assign(self, timeout: int) -> dict | None:
        process = super().assign(timeout)
        if process is not None:
            self.running_at_assign.append(self.sandbox.running)
        return process


def _ahead_executor(client: FakeColonies, sandbox: FakeSandbox, slow: bool) -> tuple[Any, Any]:
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(client, sandbox, code, name="t", concurrency=1, ahead=2, grace=1)
    if slow:
        executor.slots.short_run = 0  # as after a call that took long
    thread = threading.Thread(target=executor.run)
    thread.start()
    return executor, thread


def test_calls_are_not_assigned_ahead_after_a_long_call():
    """1 sandbox slot, 2 assigns ahead: after a long call a process is assigned only while
    the slot is free. (Short calls, and long ones in a slot: tests/unit/test_ahead.py.)"""
    sandbox = CountingSandbox()
    client = AssignRecorder(sandbox)
    for i in range(3):
        client.submit(f"p{i}", {"function": "block"}, maxexectime=30)
    executor, thread = _ahead_executor(client, sandbox, slow=True)
    try:
        sandbox.release.set()
        assert {c[1] for c in client.wait_for(3) if c[0] == "close"} == {"p0", "p1", "p2"}
        assert sandbox.most == 1
        assert client.running_at_assign == [0, 0, 0]
    finally:
        sandbox.release.set()
        executor.request_stop()
        executor.request_stop()
        thread.join(10)
