"""Engine benchmark (run by ``make bench``; not a test): sandboxed calls against the floor.

The FLOOR is a bare fork + pipe + wait4 issued through the same Sandbox and forker
(``Sandbox._bare_call``): the same parent<->forker round trip and poll loop, no sandbox work.
Floor and sandbox rounds alternate (the machine's two cores are shared), and each scenario
reports p50/p99 latency per call, calls/s, and the sandbox/floor ratio of the p50s.

Scenarios: back-to-back calls from 1 and 2 threads, and paced calls (one every 5 ms) which
show fork-ahead at work: the spare is already isolated and warmed when the call arrives.
Workload: the tutorial's ``convert(21)``.

    .venv/bin/python bench/bench_engine.py [--seconds 1.0] [--rounds 3] [--prefork 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faas_sandbox import Outcome, Policy, Sandbox

SOURCE = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"
PACE_S = 0.005


class Samples:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.elapsed = 0.0

    def add(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.elapsed += other.elapsed

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def run_round(call: Callable[[], Outcome], threads: int, seconds: float,
              pace: float = 0.0) -> Samples:
    """``threads`` callers, back to back (or one call every ``pace`` s), for ``seconds``."""
    out = Samples()
    lock = threading.Lock()
    start = time.perf_counter()
    stop_at = start + seconds

    def worker() -> None:
        mine = []
        next_at = time.perf_counter()
        while True:
            if pace:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += pace
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            result = call()
            mine.append(time.perf_counter() - t0)
            if not result.ok:
                raise SystemExit(f"benchmark call failed: {result.reason}")
        with lock:
            out.latencies += mine

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.elapsed = time.perf_counter() - start
    return out


def scenario(sb: Sandbox, threads: int, seconds: float, rounds: int,
             pace: float = 0.0) -> tuple[Samples, Samples]:
    floor, sandbox = Samples(), Samples()
    sandboxed = lambda: sb.call(SOURCE, "convert", [21])  # noqa: E731
    for _ in range(rounds):  # alternate: floor, sandbox, floor, sandbox ...
        floor.add(run_round(sb._bare_call, threads, seconds, pace))
        sandbox.add(run_round(sandboxed, threads, seconds, pace))
    return floor, sandbox


def ms(x: float) -> str:
    return f"{x * 1e3:7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="floor/sandbox round pairs")
    parser.add_argument("--prefork", type=int, default=1, help="spare children kept ready")
    opts = parser.parse_args()

    load_before = os.getloadavg()
    with Sandbox(Policy(prefork=opts.prefork)) as sb:
        features = sb.features
        for _ in range(50):  # warm up: compile, cache, first spares
            sb.call(SOURCE, "convert", [21])
            sb._bare_call()
        assert sb.call(SOURCE, "convert", [21]).value == 69.8
        rows = [
            ("1 thread, back to back", *scenario(sb, 1, opts.seconds, opts.rounds)),
            ("2 threads, back to back", *scenario(sb, 2, opts.seconds, opts.rounds)),
            (f"1 thread, paced {PACE_S * 1e3:g} ms", *scenario(sb, 1, opts.seconds, opts.rounds,
                                                                pace=PACE_S)),
        ]
    load_after = os.getloadavg()

    print(f"faas-sandbox engine benchmark: convert(21), prefork={opts.prefork}, "
          f"{opts.rounds} x {opts.seconds:g} s rounds per side, alternating")
    print(f"machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
          f"{platform.python_version()}, load {load_before[0]:.2f} -> {load_after[0]:.2f}; "
          f"seccomp={features.get('seccomp')}, drop_privileges="
          f"{features.get('drop_privileges')}")
    print()
    header = (f"{'scenario':26s} | {'floor p50':>9s} {'p99':>8s} {'calls/s':>8s} | "
              f"{'sandbox p50':>11s} {'p99':>8s} {'calls/s':>8s} | {'p50 ratio':>9s}")
    print(header)
    print("-" * len(header))
    for name, floor, sandbox in rows:
        ratio = sandbox.pct(0.5) / floor.pct(0.5)
        print(f"{name:26s} | {ms(floor.pct(0.5))}ms {ms(floor.pct(0.99))} {floor.rate:8.0f} | "
              f"  {ms(sandbox.pct(0.5))}ms {ms(sandbox.pct(0.99))} {sandbox.rate:8.0f} | "
              f"{ratio:8.2f}x")
    print()
    print("latencies in ms, measured in the calling thread (request to Outcome); floor = bare "
          "fork + pipe + wait4 through the same forker.")
    print("targets: sandbox p50 <= 1.5x floor; >= 400 sandboxed calls/s with 2 threads; "
          "paced p50 toward < 0.5 ms.")


if __name__ == "__main__":
    main()
