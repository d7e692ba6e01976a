"""How fast does a submitter learn that a call ended? ``ws`` subscriptions against ``poll``.

Needs the local stack (``scripts/stack.sh up``; ``source .dev/stack.env``). Registers a
throw-away executor of a unique type with the colony key, so no real executor takes the calls,
and removes it at the end. For each strategy and each run time it measures

    detection latency = when wait() returned - when the executor's close/fail returned

(the server has the final state before it replies to the close), and the whole call
(submit + wait) for a call that ends at once.

    .venv/bin/python bench/wait_latency.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid

from faas_sandbox.colonies.backend import ColoniesBackend
from faas_sandbox.colonies.calls import CallRequest
from faas_sandbox.colonies.client import ColoniesClient, key_id, new_prvkey
from faas_sandbox.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    opts = parser.parse_args()
    settings = Settings.from_env(os.environ)
    assert settings.colony_prvkey, "needs COLONIES_COLONY_PRVKEY to register a bench executor"
    member = ColoniesClient.connect(
        settings.host, settings.port, settings.tls, settings.colony_name, settings.require_prvkey()
    )
    etype = f"bench-wait-{uuid.uuid4().hex[:8]}"
    ekey = new_prvkey()
    executor = member.with_key(ekey)
    executor.add_executor(etype, key_id(ekey), etype, settings.colony_prvkey)
    executor.approve_executor(etype, settings.colony_prvkey)
    try:
        for strategy in ("ws", "poll"):
            backend = ColoniesBackend(member, etype, strategy)
            for delay in (0.0, 0.01, 0.05, 0.2):
                for ok in (True, False):
                    lat, total = run(backend, executor, delay, ok, opts.runs)
                    print(
                        f"{strategy:4} run {delay * 1000:5.0f} ms {'ok  ' if ok else 'fail'}  "
                        f"detect p50 {pct(lat, 50):6.1f} ms  p90 {pct(lat, 90):6.1f} ms  "
                        f"max {max(lat):6.1f} ms   call p50 {pct(total, 50):6.1f} ms"
                    )
    finally:
        executor.remove_executor(etype, settings.colony_prvkey)


def run(
    backend: ColoniesBackend, executor: ColoniesClient, delay: float, ok: bool, runs: int
) -> tuple[list[float], list[float]]:
    latencies, totals = [], []
    for _ in range(runs):
        closed: list[float] = []

        def serve() -> None:
            process = executor.assign(5)
            assert process is not None
            time.sleep(delay)
            if ok:
                executor.close(process["processid"], [1])
            else:
                executor.fail(process["processid"], ["runtime: bench"])
            closed.append(time.monotonic())  # noqa: B023 - joined within this iteration

        thread = threading.Thread(target=serve)
        thread.start()
        started = time.monotonic()
        pid = backend.submit(CallRequest("bench", (1,), {}, 5.0, 5, 0))
        end = backend.wait(pid, 10)
        seen = time.monotonic()
        thread.join()
        assert end.state.final, end
        latencies.append((seen - closed[0]) * 1000)
        totals.append((seen - started) * 1000)
    return latencies, totals


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) > 1 else values[0]


if __name__ == "__main__":
    main()
