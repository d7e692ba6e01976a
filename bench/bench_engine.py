"""Engine benchmark (run by ``make bench``; not a test): sandboxed calls next to physical floors.

Floors are measured in the same run by a *small* separate Python process (``python -I``,
nothing imported), not through the engine:

- pipe floor: a child forked ahead and waiting on a pipe answers a request over a pipe
  (request written -> answer read), one every 5 ms: what "straight to a ready child" can
  at best cost when calls come 5 ms apart;
- fork floor: fork + pipe + one byte back + waitpid, back to back (1 and 2 threads): what a
  fresh process per call costs at the least.

Floor and sandbox rounds alternate (the machine's two cores are shared) and each row prints
p50/p99 per call, calls/s and the sandbox/floor ratio, with the issue's targets next to them:
paced p50 <= 0.40 ms, back-to-back p50 <= 2.0x the fork floor, >= 1,000 calls/s with two
threads. Workload: the tutorial's ``convert(21)``.

A second table gives the CPU each call cost the whole process tree (less noisy than wall
time on a shared machine): for the floor, its process and children; for the sandbox, this
process (the calling threads and the link's reader thread), the forker, and the children the
forker reaped (``/proc`` utime+stime and cutime+cstime, 10 ms ticks summed over every call of
the rounds), with the children's page faults. Two cores give at most ``2000 / cpu_ms``
calls/s.

    .venv/bin/python bench/bench_engine.py [--seconds 1.0] [--rounds 3] [--prefork 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faas_sandbox import Outcome, Policy, Sandbox

SOURCE = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"
PACE_S = 0.005

# The floors, run by `python -I -c` (argv: mode, threads, seconds, pace); prints latencies.
_FLOOR = r"""
import json, os, sys, threading, time
mode, threads, seconds, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
import resource
lat, lock = [], threading.Lock()
def fork_once():
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.write(w, b"x"); os._exit(0)
    os.close(w); os.read(r, 1); os.close(r); os.waitpid(pid, 0)
    return time.perf_counter() - t0
def pipe_once():
    a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(a_w); os.close(b_r)
        os.write(b_w, os.read(a_r, 64)); os._exit(0)
    os.close(a_r); os.close(b_w)
    time.sleep(pace)
    t0 = time.perf_counter()
    os.write(a_w, b"request"); os.read(b_r, 64)
    took = time.perf_counter() - t0
    os.close(a_w); os.close(b_r); os.waitpid(pid, 0)
    return took
once = fork_once if mode == "fork" else pipe_once
def worker():
    mine = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        mine.append(once())
    with lock:
        lat.extend(mine)
def cpu():
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF,
               resource.RUSAGE_CHILDREN) for f in ("ru_utime", "ru_stime"))
cpu0 = cpu()
start = time.perf_counter()
pool = [threading.Thread(target=worker) for _ in range(threads)]
for t in pool: t.start()
for t in pool: t.join()
print(json.dumps({"lat": lat, "elapsed": time.perf_counter() - start, "cpu": cpu() - cpu0}))
"""


class Samples:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.elapsed = 0.0
        self.cpu = {"caller": 0.0, "forker": 0.0, "children": 0.0}  # seconds, whole rounds
        self.child_faults = 0

    def add(self, other: Samples) -> None:
        self.latencies += other.latencies
        self.elapsed += other.elapsed
        for key, value in other.cpu.items():
            self.cpu[key] += value
        self.child_faults += other.child_faults

    def cpu_ms(self, key: str | None = None) -> float:
        """CPU per call in ms: one part, or all of them."""
        total = self.cpu[key] if key else sum(self.cpu.values())
        return total * 1e3 / len(self.latencies) if self.latencies else float("nan")

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0


def floor_round(mode: str, threads: int, seconds: float, pace: float = 0.0) -> Samples:
    out = subprocess.run(
        [sys.executable, "-I", "-c", _FLOOR, mode, str(threads), str(seconds), str(pace)],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    samples = Samples()
    samples.latencies, samples.elapsed = data["lat"], data["elapsed"]
    samples.cpu["children"] = data["cpu"]  # the floor process and its children
    return samples


_TICK = os.sysconf("SC_CLK_TCK")


def tree_usage(forker_pid: int) -> tuple[float, float, float, int]:
    """(this process, forker, forker's reaped children) CPU seconds, children's faults."""
    with open(f"/proc/{forker_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    me = resource.getrusage(resource.RUSAGE_SELF)
    return (
        me.ru_utime + me.ru_stime,
        (int(fields[11]) + int(fields[12])) / _TICK,
        (int(fields[13]) + int(fields[14])) / _TICK,
        int(fields[8]),
    )


def run_round(
    call: Callable[[], Outcome],
    threads: int,
    seconds: float,
    pace: float = 0.0,
    forker_pid: int = 0,
) -> Samples:
    """``threads`` callers, back to back (or one call every ``pace`` s), for ``seconds``."""
    out = Samples()
    before = tree_usage(forker_pid) if forker_pid else None
    lock = threading.Lock()
    start = time.perf_counter()
    stop_at = start + seconds

    def worker() -> None:
        mine = []
        while True:
            if pace:
                time.sleep(pace)
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
    if before is not None:
        time.sleep(0.05)  # the last children exit and are reaped
        after = tree_usage(forker_pid)
        out.cpu = {
            key: after[i] - before[i] for i, key in enumerate(("caller", "forker", "children"))
        }
        out.child_faults = after[3] - before[3]
    return out


def scenario(
    sb: Sandbox, floor_mode: str, threads: int, seconds: float, rounds: int, pace: float = 0.0
) -> tuple[Samples, Samples]:
    floor, sandbox = Samples(), Samples()
    sandboxed = lambda: sb.call(SOURCE, "convert", [21])  # noqa: E731
    for _ in range(rounds):  # alternate: floor, sandbox, floor, sandbox ...
        floor.add(floor_round(floor_mode, threads, seconds, pace))
        sandbox.add(run_round(sandboxed, threads, seconds, pace, sb._forker_pid))
    return floor, sandbox


def ms(x: float) -> str:
    return f"{x * 1e3:7.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="floor/sandbox round pairs")
    parser.add_argument("--prefork", type=int, default=2, help="spare children kept ready")
    opts = parser.parse_args()

    load_before = os.getloadavg()
    with Sandbox(Policy(prefork=opts.prefork)) as sb:
        features = sb.features
        for _ in range(50):  # warm up: compile, cache, first spares
            sb.call(SOURCE, "convert", [21])
        assert sb.call(SOURCE, "convert", [21]).value == 69.8
        paced = scenario(sb, "pipe", 1, opts.seconds, opts.rounds, pace=PACE_S)
        one = scenario(sb, "fork", 1, opts.seconds, opts.rounds)
        two = scenario(sb, "fork", 2, opts.seconds, opts.rounds)
    load_after = os.getloadavg()

    print(
        f"faas-sandbox engine benchmark: convert(21), prefork={opts.prefork}, "
        f"{opts.rounds} x {opts.seconds:g} s rounds per side, alternating"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Linux {platform.release()}, Python "
        f"{platform.python_version()}, load {load_before[0]:.2f} -> {load_after[0]:.2f}; "
        f"lockdown/seccomp={features.get('seccomp')}, drop_privileges="
        f"{features.get('drop_privileges')}"
    )
    print()
    header = (
        f"{'scenario':24s} | {'floor':10s} {'p50':>8s} {'p99':>8s} {'calls/s':>8s} | "
        f"{'sandbox p50':>11s} {'p99':>8s} {'calls/s':>8s} | {'ratio':>6s} | target"
    )
    print(header)
    print("-" * len(header))
    rows = [
        (
            f"1 thread, paced {PACE_S * 1e3:g} ms",
            "pipe",
            *paced,
            lambda f, s: f"p50 <= 0.400 ms: {'met' if s.pct(0.5) <= 0.0004 else 'NOT met'}",
        ),
        (
            "1 thread, back to back",
            "fork",
            *one,
            lambda f, s: (
                f"p50 <= 2.0x floor: {'met' if s.pct(0.5) <= 2 * f.pct(0.5) else 'NOT met'}"
            ),
        ),
        (
            "2 threads, back to back",
            "fork x2",
            *two,
            lambda f, s: f">= 1000 calls/s: {'met' if s.rate >= 1000 else 'NOT met'}",
        ),
    ]
    for name, kind, floor, sandbox, target in rows:
        ratio = sandbox.pct(0.5) / floor.pct(0.5)
        print(
            f"{name:24s} | {kind:10s} {ms(floor.pct(0.5))} {ms(floor.pct(0.99))} "
            f"{floor.rate:8.0f} | {ms(sandbox.pct(0.5))}    {ms(sandbox.pct(0.99))} "
            f"{sandbox.rate:8.0f} | {ratio:5.2f}x | {target(floor, sandbox)}"
        )
    print()
    print(
        "latencies in ms, measured in the calling thread (request to Outcome). Floors run in "
        "a separate small `python -I`: pipe = a child forked ahead answers over a pipe; "
        "fork = fork + pipe + waitpid."
    )
    print()
    header = (
        f"{'CPU ms per call':24s} | {'floor':>7s} | {'sandbox':>7s} = {'caller':>6s} + "
        f"{'forker':>6s} + {'children':>8s} | {'child faults':>12s} | 2 cores at most"
    )
    print(header)
    print("-" * len(header))
    for name, _, floor, sandbox, _ in rows:
        total = sandbox.cpu_ms()
        print(
            f"{name:24s} | {floor.cpu_ms():7.3f} | {total:7.3f} = {sandbox.cpu_ms('caller'):6.3f}"
            f" + {sandbox.cpu_ms('forker'):6.3f} + {sandbox.cpu_ms('children'):8.3f} | "
            f"{sandbox.child_faults / max(1, len(sandbox.latencies)):12.0f} | "
            f"{2000 / total:6.0f} calls/s"
        )
    print(
        "CPU of the whole process tree per call (10 ms ticks summed over all rounds): floor = "
        "its process and children; sandbox = this process + forker + reaped children."
    )


if __name__ == "__main__":
    main()
