"""Assigning ahead over a slow link, on one machine: the real executor loop (executor/loop.py)
against an in-process server whose every request costs one round trip, and a sandbox that
only holds its slot for the call's time (no fork: this measures the loop, not the engine).

    .venv/bin/python bench/bench_ahead.py [--calls 300] [--rtt-ms 50] [--call-ms 3]

Rows: ``--ahead 0`` (a thread per slot) and the default, at 0 ms and ``--rtt-ms``; each row
drains ``--calls`` calls submitted at once and prints calls/s next to its bound, the smaller of
slots / call time and threads / (assign + close round trips + call time). A last pair of rows
mixes in long calls (``--long`` of them hold a slot for ``--long-s``) under a short
maxexectime: with the default, no call may fail as ``timeout`` before it started.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading
import time
from typing import Any

from faas_sandbox.engine.outcome import Outcome, Usage
from faas_sandbox.executor.loop import Executor

CODE = base64.b64encode(b"def f(s):\n    return s\n").decode()


class SlowLink:
    """The Colonies calls the executor makes, each one round trip long."""

    def __init__(self, rtt: float) -> None:
        self.rtt, self.queue, self.lock = rtt, [], threading.Lock()
        self.ends: dict[str, tuple[float, str, Any]] = {}
        self.done = threading.Condition(self.lock)

    def add(self, pid: str, seconds: float, maxexectime: int) -> None:
        spec = {"funcname": "f", "args": [seconds], "kwargs": {}, "env": {"code": CODE},
                "maxexectime": maxexectime, "maxretries": 0}  # fmt: skip
        with self.lock:
            self.queue.append({"processid": pid, "retries": 0, "spec": spec})

    def assign(self, timeout: int) -> dict[str, Any] | None:
        time.sleep(self.rtt)
        with self.lock:
            return self.queue.pop(0) if self.queue else None

    def abort_assigns(self) -> None:
        pass

    def _end(self, pid: str, how: str, what: Any) -> None:
        time.sleep(self.rtt)
        with self.lock:
            self.ends[pid] = (time.monotonic(), how, what)
            self.done.notify_all()

    def close(self, pid: str, out: list[Any]) -> None:
        self._end(pid, "close", out)

    def fail(self, pid: str, errors: list[str]) -> None:
        self._end(pid, "fail", errors)

    def add_log(self, pid: str, message: str) -> None:
        time.sleep(self.rtt)

    def list_processes(self, state: int, count: int = 100, executortype: str = "") -> list:
        return []

    def get_process(self, pid: str) -> dict[str, Any]:
        raise KeyError(pid)


class HoldSandbox:
    """Holds the slot for the call's first argument (seconds); answers 1."""

    def call(self, source, function, args=(), kwargs=None, maxexectime=None, *, element=False):
        seconds = min(args[0], maxexectime or args[0])
        time.sleep(seconds)
        return Outcome(True, 1, usage=Usage(seconds, 0.0, 0))


def drain(rtt: float, ahead: int | None, calls: list[tuple[float, int]], slots: int) -> tuple:
    link = SlowLink(rtt)
    for i, (seconds, maxexectime) in enumerate(calls):
        link.add(f"p{i}", seconds, maxexectime)
    executor = Executor(link, HoldSandbox(), None, name="b", concurrency=slots, ahead=ahead)  # type: ignore[arg-type]
    thread = threading.Thread(target=executor.run, daemon=True)
    start = time.monotonic()
    thread.start()
    with link.lock:
        link.done.wait_for(lambda: len(link.ends) == len(calls), 120)
    elapsed = max(t for t, _, _ in link.ends.values()) - start
    executor.request_stop()
    executor.request_stop()
    thread.join(10)
    early = [w for _, how, w in link.ends.values() if how == "fail" and "before the call" in w[0]]
    return len(calls) / elapsed, executor.concurrency + executor.ahead, len(early)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--rtt-ms", type=float, default=50.0)
    ap.add_argument("--call-ms", type=float, default=3.0)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--long", type=int, default=20, help="long calls in the mixed rows")
    ap.add_argument("--long-s", type=float, default=1.75)
    opts = ap.parse_args()
    call_s, c = opts.call_ms / 1000, opts.concurrency
    short = [(call_s, 30)] * opts.calls
    print(f"load average {os.getloadavg()[0]:.2f}; {opts.calls} calls of {opts.call_ms:g} ms, "
          f"--concurrency {c}")  # fmt: skip
    print("rtt ms  --ahead   calls/s   bound   failed before start")
    for rtt in (0.0, opts.rtt_ms / 1000):
        for ahead in (0, None):
            rate, threads, early = drain(rtt, ahead, short, c)
            bound = min(c / call_s, threads / (2 * rtt + call_s))
            print(f"{rtt * 1000:6.0f}  {threads - c:7d}  {rate:8.1f}  {bound:6.0f}   {early}")
    every = max(1, opts.calls // max(1, opts.long))
    mixed = [((opts.long_s, 2) if i % every == 0 else (call_s, 2)) for i in range(opts.calls)]
    print(f"mixed: every {every}th call holds its slot {opts.long_s:g}s; all maxexectime 2")
    for ahead in (0, None):
        rate, threads, early = drain(opts.rtt_ms / 1000, ahead, mixed, c)
        print(f"{opts.rtt_ms:6.0f}  {threads - c:7d}  {rate:8.1f}       -   {early}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
