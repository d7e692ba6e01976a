"""End-to-end benchmark against the running stack: the tutorial's executor, a null executor, ours.

In ONE run, at the SAME concurrency N, one phase per executor, in this order:

  naive          bench/naive_executor.py --threads N  (the tutorial's executor, pycolonies as-is)
  null (before)  bench/null_executor.py --threads N   (assign -> close [69.8]: the server's ceiling)
  ours           faas-sandbox executor --concurrency N (sandboxed child per call)
  null (after)   the ceiling again, since it drifts (table growth, other load on the machine)

Each executor runs as its own process with its own unique executor type (so none takes another's
calls). The load generator (this process) submits the tutorial's spec (``execute``, kwargs
``{function: convert, arg: "21"}``, explicit maxexectime/maxretries) with our fast client
(its proxy lookups turned off, to take less of the shared CPU: _load.LoadgenColonies) from
``--submitters`` threads, keeping ``--window`` calls outstanding (closed loop), and detects ends
with server-pushed WebSocket frames (see bench/_load.py); after ``--warmup`` calls it measures
``--calls`` calls: calls/s, p50/p95/p99 submit -> end latency, outputs (every SUCCESS must be
[69.8]), lost calls, CPU per process (psutil) and our executor's parent RSS. The 2 cores are
shared by the server, PostgreSQL, the executor and this load generator, so the report also
gives the CPU-ms per call of each and the CPU-bound capacity they imply; the CPU of other
tenants of the machine shows as ``other``: check it before trusting a comparison.

    scripts/stack.sh up && .venv/bin/python bench/bench_e2e.py [--quick] [-n 4] [--calls 3000]

Every option has an environment twin (BENCH_CONCURRENCY, BENCH_CALLS, BENCH_NAIVE_CALLS,
BENCH_WARMUP, BENCH_WINDOW, BENCH_SUBMITTERS, BENCH_MAXEXECTIME, BENCH_MAXRETRIES, BENCH_PHASES,
BENCH_OURS_CMD, BENCH_OURS_ARGS).
Exit status 0 when ours met both targets (>= 0.95x null, >= 3x naive) and lost nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    EXPECTED, READY, REPO, CpuMeter, ExecutorProc, RssPeak, cleanup, format_cpu, load_stack_env,
    pct, registered, stack_pids, tree_rss, tutorial_spec,
)
from _load import LoadgenColonies, LoadResult, LoadRun, Watcher  # noqa: E402

MIB = 1024 * 1024
PY = str(REPO / ".venv" / "bin" / "python")
FAAS = str(REPO / ".venv" / "bin" / "faas-sandbox")
LOG_DIR = REPO / ".dev" / "bench"
PHASES = ("naive", "null-before", "ours", "null-after")


@dataclass
class Phase:
    label: str
    kind: str  # naive, null, ours
    executortype: str
    result: LoadResult | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, tuple[int, int]] = field(default_factory=dict)  # when -> (parent, children)
    notes: list[str] = field(default_factory=list)


def env_default(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (~30 s), for a smoke test")
    p.add_argument("-n", "--concurrency", type=int, default=env_default("BENCH_CONCURRENCY", 4))
    p.add_argument("--calls", type=int, default=env_default("BENCH_CALLS", 3000),
                   help="measured calls per phase (null and ours)")
    p.add_argument("--naive-calls", type=int, default=env_default("BENCH_NAIVE_CALLS", 600),
                   help="measured calls of the naive phase (it is much slower)")
    p.add_argument("--warmup", type=int, default=env_default("BENCH_WARMUP", 100))
    p.add_argument("--window", type=int, default=env_default("BENCH_WINDOW", 0),
                   help="calls outstanding [default: 2 x concurrency]")
    p.add_argument("--submitters", type=int, default=env_default("BENCH_SUBMITTERS", 4))
    p.add_argument("--maxexectime", type=int, default=env_default("BENCH_MAXEXECTIME", 30))
    p.add_argument("--maxretries", type=int, default=env_default("BENCH_MAXRETRIES", 0))
    p.add_argument("--phases", default=env_default("BENCH_PHASES", ",".join(PHASES)),
                   help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--ours-cmd", default=env_default("BENCH_OURS_CMD", f"{FAAS} executor"),
                   help="the command that runs our executor [default: %(default)s]")
    p.add_argument("--ours-args", default=env_default("BENCH_OURS_ARGS", ""),
                   help="extra flags for `faas-sandbox executor`, e.g. \"--policy p.toml\"")
    p.add_argument("--keep", action="store_true", help="keep the benchmark's processes in the DB")
    opts = p.parse_args()
    if opts.quick:
        opts.calls, opts.naive_calls, opts.warmup = 400, 100, 30
    opts.window = opts.window or 2 * opts.concurrency
    return opts


def main() -> int:
    opts = parse_args()
    load_stack_env()
    from faas_sandbox.colonies import ColoniesClient
    from faas_sandbox.settings import Settings

    settings = Settings.from_env(os.environ)
    if not settings.colony_prvkey:
        raise SystemExit("bench: needs COLONIES_COLONY_PRVKEY (executors register themselves)")
    member = ColoniesClient(LoadgenColonies(settings.host, settings.port, settings.tls),
                            settings.colony_name, settings.require_prvkey())
    member.rpc("versionmsg")  # fails fast when the server is not up
    deploy = subprocess.run([FAAS, "deploy", "examples/convert.py"], cwd=REPO,
                            capture_output=True, text=True, check=False)
    if deploy.returncode != 0:
        raise SystemExit(f"bench: deploy failed: {deploy.stderr.strip()}")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:8]
    wanted = [p.strip() for p in opts.phases.split(",") if p.strip()]
    phases = [Phase(name, name.split("-")[0], f"bench-{run_id}-{name}") for name in wanted]
    print(f"bench-e2e run {run_id}: concurrency {opts.concurrency}, window {opts.window}, "
          f"{opts.submitters} submitters, {opts.calls} calls ({opts.naive_calls} naive) after "
          f"{opts.warmup} warm-up; maxexectime {opts.maxexectime}, maxretries "
          f"{opts.maxretries}; logs in {LOG_DIR.relative_to(REPO)}/{run_id}-*.log", flush=True)
    all_pids: list[str] = []
    try:
        for phase in phases:
            run_phase(phase, opts, settings, member, run_id, all_pids)
    finally:
        if not opts.keep:
            cleanup(member, all_pids, opts.submitters)
    return report(phases, opts)


def executor_argv(phase: Phase, n: int, run_id: str, cmd: str,
                  extra: str) -> tuple[list[str], str]:
    if phase.kind == "naive":
        return [PY, "bench/naive_executor.py", "--threads", str(n),
                "--executortype", phase.executortype], READY
    if phase.kind == "null":
        return [PY, "bench/null_executor.py", "--threads", str(n),
                "--executortype", phase.executortype], READY
    return [*shlex.split(cmd), "--concurrency", str(n), "--executor-type", phase.executortype,
            "--identity", "self", "--name", f"bench-{run_id}-ours", *shlex.split(extra)], \
        "serving ("


def run_phase(phase: Phase, opts: argparse.Namespace, settings: Any, member: Any,
              run_id: str, all_pids: list[str]) -> None:
    argv, marker = executor_argv(phase, opts.concurrency, run_id, opts.ours_cmd,
                                 opts.ours_args)
    LOG_DIR.mkdir(parents=True, exist_ok=True)  # .dev/ may be wiped while we run
    executor = ExecutorProc(argv, marker, LOG_DIR / f"{run_id}-{phase.label}.log")
    watcher = Watcher(settings.host, settings.port, settings.tls, settings.colony_name,
                      member.prvkey, phase.executortype)
    spec = tutorial_spec(settings.colony_name, phase.executortype, opts.maxexectime,
                         opts.maxretries)
    calls = opts.naive_calls if phase.kind == "naive" else opts.calls
    try:
        executor.wait_ready(120, registered(member, f"bench-{run_id}-ours")
                            if phase.kind == "ours" else None)
        pid = executor.proc.pid
        phase.rss["ready"] = tree_rss(pid)
        watcher.start()
        warm = LoadRun(member, watcher, spec, EXPECTED, total=opts.warmup, window=opts.window,
                       submitters=opts.submitters, timeout=120)
        warmed = warm.run()
        all_pids.extend(warm.pids)
        if warmed.ok < opts.warmup:
            phase.notes.append(f"warm-up: {warmed.ok}/{opts.warmup} calls ok "
                               f"({'; '.join(warmed.samples) or 'not ended'})")
        meter = CpuMeter(stack_pids(), {"executor": pid})
        phase.rss["start"] = tree_rss(pid)
        peak = RssPeak(pid)
        before = meter.sample()
        load = LoadRun(member, watcher, spec, EXPECTED, total=calls, window=opts.window,
                       submitters=opts.submitters, timeout=max(120.0, calls / 5))
        phase.result = load.run()
        after = meter.sample()
        phase.rss["end"] = tree_rss(pid)
        phase.rss["peak"] = (peak.stop(), 0)
        all_pids.extend(load.pids)
        phase.cpu = CpuMeter.delta(before, after)
        phase.notes.extend(watcher.errors[:3])
    finally:
        watcher.stop()
        status = executor.stop()
        if status not in (0, None):
            phase.notes.append(f"executor exit status {status} (see {executor.log_path})")
    r = phase.result
    print(f"  {phase.label:12} {r.rate:7.1f} calls/s  p50 {pct(r.latencies_ms, 50):6.1f} ms  "
          f"p95 {pct(r.latencies_ms, 95):6.1f} ms  ok {r.ok}/{r.total}", flush=True)


def report(phases: list[Phase], opts: argparse.Namespace) -> int:
    print()
    head = (f"{'executor':14} {'N':>3} {'calls':>6} {'calls/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'p99 ms':>7} {'ok':>6} {'wrong':>5} {'failed':>6} {'lost':>4} {'swept':>5}")
    print(head)
    print("-" * len(head))
    by = {p.label: p for p in phases if p.result is not None}
    for p in by.values():
        r = p.result
        assert r is not None
        lat = r.latencies_ms
        print(f"{p.label:14} {opts.concurrency:>3} {r.total:>6} {r.rate:>8.1f} "
              f"{pct(lat, 50):>7.1f} {pct(lat, 95):>7.1f} {pct(lat, 99):>7.1f} {r.ok:>6} "
              f"{r.wrong:>5} {r.failed + r.submit_errors:>6} {r.lost:>4} {r.swept:>5}")
    print()
    ok = True
    ours = by.get("ours")
    if ours is not None and ours.result is not None:
        rate = ours.result.rate
        for label, target in (("null-before", 0.95), ("null-after", 0.95), ("naive", 3.0)):
            other = by.get(label)
            if other is None or other.result is None:
                continue
            ratio = rate / other.result.rate
            met = ratio >= target
            ok = ok and met
            print(f"ours / {label:12} = {ratio:5.2f}x  (target >= {target}x: "
                  f"{'met' if met else 'NOT met'})")
        r = ours.result
        lost = r.lost + r.wrong + r.failed + r.submit_errors
        ok = ok and lost == 0
        print(f"ours: {r.ok}/{r.total} calls returned {EXPECTED}; lost/wrong/failed: {lost}")
        rss = ours.rss
        print("ours parent RSS: " + ", ".join(
            f"{k} {v[0] / MIB:.1f} MiB" for k, v in rss.items()) +
            f"; children (forker + spares) at end {rss.get('end', (0, 0))[1] / MIB:.1f} MiB")
    print("\nexecutor parent RSS (MiB) at ready / start of the measured run / end / peak:")
    for p in by.values():
        print(f"  {p.label:12} " + " / ".join(f"{p.rss.get(k, (0, 0))[0] / MIB:.1f}"
                                             for k in ("ready", "start", "end", "peak")))
    print("\nCPU during each measured phase (% of one core; CPU-ms per call):")
    for p in by.values():
        assert p.result is not None
        print(f"  {p.label:12} {format_cpu(p.cpu, p.result.ended)}")
    cores = psutil.cpu_count() or 1
    print(f"\nCPU-bound capacity = {cores} cores / CPU-ms per call of server + postgres + minio + "
          f"executor + load generator (`other` left out; server and postgres also serve any "
          f"other client of the shared stack):")
    capacity = {}
    for p in by.values():
        assert p.result is not None
        ms = 1000 * sum(v for k, v in p.cpu.items() if k not in ("other", "busy", "wall")) \
            / max(p.result.ended, 1)
        capacity[p.label] = cores * 1000 / ms if ms else float("nan")
        print(f"  {p.label:12} {ms:6.2f} CPU-ms/call -> {capacity[p.label]:6.1f} calls/s")
    if "ours" in capacity:
        print("  ours / " + ", ours / ".join(f"{k} = {capacity['ours'] / v:.2f}x"
                                              for k, v in capacity.items() if k != "ours"))
    for p in phases:
        for note in p.notes + (p.result.samples if p.result else []):
            print(f"  note [{p.label}]: {note}")
    load1 = os.getloadavg()[0]
    print(f"\nload average (1 min) at the end: {load1:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
