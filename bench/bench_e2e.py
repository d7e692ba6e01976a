"""End-to-end benchmark against the running stack: the tutorial's executor, a null executor, ours.

In ONE run, at the SAME concurrency N, one phase per executor, in this order:

  naive          bench/naive_executor.py --threads N  (the tutorial's executor, pycolonies as-is)
  null (before)  bench/null_executor.py --threads N   (assign -> close [69.8]: the server's ceiling)
  ours           faas-sandbox executor --concurrency N (sandboxed child per call)
  null (after)   the ceiling again, since it drifts (table growth, other load on the machine)

Each executor runs as its own process with its own unique executor type (so none takes another's
calls) and writes its output straight into its log file (no thread here copies it). Ours, as
deployed, also keeps ``--ahead`` more assigns in flight than its N slots; the report prints the
long-polls of each next to the calls outstanding. The load generator (this process) submits the
tutorial's spec (``execute``, kwargs ``{function: convert, arg: "21"}``, explicit
maxexectime/maxretries) with our own client (faas_sandbox.colonies.client, which reads no proxy
settings) from ``--submitters`` threads, keeping ``--window`` calls outstanding (closed loop),
and detects ends with server-pushed WebSocket frames (see bench/_load.py); after ``--warmup``
calls it measures ``--calls`` calls: calls/s, p50/p95/p99 submit -> end latency, outputs (every
SUCCESS must be [69.8]), lost calls, CPU per process (psutil) and our executor's parent RSS. The
2 cores are shared by the server, PostgreSQL, the executor and this load generator, so the
report also gives the CPU-ms per call of each and the CPU-bound capacity they imply; the CPU of
other tenants of the machine shows as ``other``: check it before trusting a comparison.

    scripts/stack.sh up && .venv/bin/python bench/bench_e2e.py [--quick] [-n 4] [--calls 3000]

Every option has an environment twin (BENCH_CONCURRENCY, BENCH_CALLS, BENCH_NAIVE_CALLS,
BENCH_WARMUP, BENCH_WINDOW, BENCH_SUBMITTERS, BENCH_MAXEXECTIME, BENCH_MAXRETRIES, BENCH_PHASES,
BENCH_OURS_CMD, BENCH_OURS_ARGS).
Exit status 1 when ours lost a call or returned a wrong output; with --strict also when it
missed a target (>= 0.95x null, >= 3x naive).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import statistics
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    EXPECTED,
    READY,
    REPO,
    CpuMeter,
    ExecutorProc,
    RssPeak,
    cleanup,
    format_cpu,
    load_stack_env,
    pct,
    registered,
    stack_pids,
    tree_rss,
    tutorial_spec,
)
from _load import LoadResult, LoadRun, Watcher

MIB = 1024 * 1024
PY = str(REPO / ".venv" / "bin" / "python")
FAAS = str(REPO / ".venv" / "bin" / "faas-sandbox")
LOG_DIR = REPO / ".dev" / "bench"
PHASES = ("naive", "null-before", "ours", "null-after")
SERVING = re.compile(rb"serving \((\d+) in flight at most, (\d+) more assigned ahead\)")


@dataclass
class Phase:
    label: str
    kind: str  # naive, null, ours
    result: LoadResult | None = None
    cpu: dict[str, float] = field(default_factory=dict)
    rss: dict[str, tuple[int, int]] = field(default_factory=dict)  # when -> (parent, children)


def env_default(name: str, default: Any) -> Any:
    value = os.environ.get(name)
    return type(default)(value) if value not in (None, "") else default


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick", action="store_true", help="small sizes (about a minute in all), for a smoke test"
    )
    p.add_argument("-n", "--concurrency", type=int, default=env_default("BENCH_CONCURRENCY", 4))
    p.add_argument(
        "--calls",
        type=int,
        default=env_default("BENCH_CALLS", 3000),
        help="measured calls per phase (null and ours)",
    )
    p.add_argument(
        "--naive-calls",
        type=int,
        default=env_default("BENCH_NAIVE_CALLS", 600),
        help="measured calls of the naive phase (it is much slower)",
    )
    p.add_argument("--warmup", type=int, default=env_default("BENCH_WARMUP", 100))
    p.add_argument(
        "--window",
        type=int,
        default=env_default("BENCH_WINDOW", 0),
        help="calls outstanding [default: 2 x concurrency]",
    )
    p.add_argument("--submitters", type=int, default=env_default("BENCH_SUBMITTERS", 4))
    p.add_argument("--maxexectime", type=int, default=env_default("BENCH_MAXEXECTIME", 30))
    p.add_argument("--maxretries", type=int, default=env_default("BENCH_MAXRETRIES", 0))
    p.add_argument(
        "--phases",
        default=env_default("BENCH_PHASES", ",".join(PHASES)),
        help=f"comma-separated subset of {','.join(PHASES)}",
    )
    p.add_argument(
        "--ours-cmd",
        default=env_default("BENCH_OURS_CMD", f"{FAAS} executor"),
        help="the command that runs our executor [default: %(default)s]",
    )
    p.add_argument(
        "--ours-args",
        default=env_default("BENCH_OURS_ARGS", ""),
        help='extra flags for `faas-sandbox executor`, e.g. "--policy p.toml"',
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=env_default("BENCH_ROUNDS", 1),
        help="R > 1: alternate null and ours R times (null, ours, ..., null), for a "
        "busy machine; ratios are then per round against the two nulls around",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when ours misses a throughput target (lost calls always do)",
    )
    p.add_argument("--keep", action="store_true", help="keep the benchmark's processes in the DB")
    opts = p.parse_args()
    if opts.quick:
        opts.calls, opts.naive_calls, opts.warmup = 400, 100, 30
    opts.window = opts.window or 2 * opts.concurrency
    return opts


def build_phases(opts: argparse.Namespace) -> list[Phase]:
    """naive, null-before, ours, null-after; with --rounds R > 1: naive, (null-i, ours-i) x R,
    null-(R+1), so every ours segment sits between two null segments."""
    wanted = [p.strip() for p in opts.phases.split(",") if p.strip()]
    if opts.rounds <= 1:
        return [Phase(name, name.split("-")[0]) for name in wanted]
    phases = [Phase("naive", "naive")] if "naive" in wanted else []
    for i in range(1, opts.rounds + 1):
        phases += [Phase(f"null-{i}", "null"), Phase(f"ours-{i}", "ours")]
    return [*phases, Phase(f"null-{opts.rounds + 1}", "null")]


def main() -> int:
    opts = parse_args()
    load_stack_env()
    from faas_sandbox.colonies.client import ColoniesClient
    from faas_sandbox.settings import Settings

    settings = Settings.from_env(os.environ)
    if not settings.colony_prvkey:
        raise SystemExit("bench: needs COLONIES_COLONY_PRVKEY (executors register themselves)")
    member = ColoniesClient.connect(
        settings.host, settings.port, settings.tls, settings.colony_name, settings.require_prvkey()
    )
    member.rpc("versionmsg")  # fails fast when the server is not up
    deploy = subprocess.run(
        [FAAS, "deploy", "examples/convert.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    if deploy.returncode != 0:
        raise SystemExit(f"bench: deploy failed: {deploy.stderr.strip()}")
    phases = build_phases(opts)
    runner = Runner(opts, settings, member, uuid.uuid4().hex[:8])
    print(
        f"bench-e2e run {runner.run_id}: concurrency {opts.concurrency}, window {opts.window}, "
        f"{opts.submitters} submitters, {opts.calls} calls ({opts.naive_calls} naive) per "
        f"phase after {opts.warmup} warm-up; maxexectime {opts.maxexectime}, maxretries "
        f"{opts.maxretries}; logs in {LOG_DIR.relative_to(REPO)}/{runner.run_id}-*.log",
        flush=True,
    )
    try:
        for i, phase in enumerate(phases):
            runner.measure(phase, last=all(p.kind != phase.kind for p in phases[i + 1 :]))
    finally:
        runner.close()
        if not opts.keep:
            cleanup(member, runner.pids, opts.submitters)
    return report(phases, opts, runner)


class Runner:
    """Starts each kind of executor once (+ its watcher and warm-up) and measures phases."""

    def __init__(self, opts: argparse.Namespace, settings: Any, member: Any, run_id: str) -> None:
        self.opts, self.settings, self.member, self.run_id = opts, settings, member, run_id
        self.live: dict[str, tuple[ExecutorProc, Watcher]] = {}
        self.ready_rss: dict[str, tuple[int, int]] = {}
        self.notes: dict[str, list[str]] = {}
        self.pids: list[str] = []
        self.polls: dict[str, tuple[int, int]] = {}  # kind -> (slots, assigns ahead)

    def executortype(self, kind: str) -> str:
        return f"bench-{self.run_id}-{kind}"

    def argv(self, kind: str) -> tuple[list[str], str]:
        n, etype = str(self.opts.concurrency), self.executortype(kind)
        if kind in ("naive", "null"):
            return [PY, f"bench/{kind}_executor.py", "--threads", n, "--executortype", etype], READY
        return [
            *shlex.split(self.opts.ours_cmd),
            "--concurrency",
            n,
            "--executor-type",
            etype,
            "--identity",
            "self",
            "--name",
            etype,
            *shlex.split(self.opts.ours_args),
        ], "serving ("

    def spec(self, kind: str) -> dict[str, Any]:
        return tutorial_spec(
            self.settings.colony_name,
            self.executortype(kind),
            self.opts.maxexectime,
            self.opts.maxretries,
        )

    def start(self, kind: str) -> tuple[ExecutorProc, Watcher]:
        if kind in self.live:
            return self.live[kind]
        argv, marker = self.argv(kind)
        LOG_DIR.mkdir(parents=True, exist_ok=True)  # .dev/ may be wiped while we run
        executor = ExecutorProc(argv, marker, LOG_DIR / f"{self.run_id}-{kind}.log")
        watcher = Watcher(
            self.settings.host,
            self.settings.port,
            self.settings.tls,
            self.settings.colony_name,
            self.member.prvkey,
            self.executortype(kind),
        )
        self.live[kind] = (executor, watcher)
        executor.wait_ready(
            120, registered(self.member, self.executortype(kind)) if kind == "ours" else None
        )
        self.ready_rss[kind] = tree_rss(executor.proc.pid)
        self.polls[kind] = (self.opts.concurrency, 0)  # ours: read from its log at the end
        watcher.start()
        warm = LoadRun(
            self.member,
            watcher,
            self.spec(kind),
            EXPECTED,
            total=self.opts.warmup,
            window=self.opts.window,
            submitters=self.opts.submitters,
            timeout=120,
        )
        warmed = warm.run()
        self.pids.extend(warm.pids)
        if warmed.ok < self.opts.warmup:
            self.notes.setdefault(kind, []).append(
                f"warm-up: {warmed.ok}/{self.opts.warmup} calls ok "
                f"({'; '.join(warmed.samples) or 'not ended'})"
            )
        return executor, watcher

    def stop(self, kind: str) -> None:
        executor, watcher = self.live.pop(kind)
        watcher.stop()
        self.notes.setdefault(kind, []).extend(watcher.errors[:3])
        status = executor.stop()
        if status not in (0, None):
            self.notes[kind].append(f"executor exit status {status} (see {executor.log_path})")

    def close(self) -> None:
        for kind in list(self.live):
            self.stop(kind)

    def measure(self, phase: Phase, last: bool) -> None:
        executor, watcher = self.start(phase.kind)
        pid = executor.proc.pid
        calls = self.opts.naive_calls if phase.kind == "naive" else self.opts.calls
        meter = CpuMeter(stack_pids(), {"executor": pid})
        phase.rss["start"] = tree_rss(pid)
        peak = RssPeak(pid)
        before = meter.sample()
        load = LoadRun(
            self.member,
            watcher,
            self.spec(phase.kind),
            EXPECTED,
            total=calls,
            window=self.opts.window,
            submitters=self.opts.submitters,
            timeout=max(120.0, calls / 5),
        )
        phase.result = r = load.run()
        after = meter.sample()
        phase.rss["end"] = tree_rss(pid)
        phase.rss["peak"] = (peak.stop(), 0)
        self.pids.extend(load.pids)
        phase.cpu = CpuMeter.delta(before, after)
        if last:
            self.stop(phase.kind)
        print(
            f"  {phase.label:12} {r.rate:7.1f} calls/s  p50 {pct(r.latencies_ms, 50):6.1f} "
            f"ms  p95 {pct(r.latencies_ms, 95):6.1f} ms  ok {r.ok}/{r.total}  (other CPU "
            f"{100 * phase.cpu['other'] / phase.cpu['wall']:.0f}% of a core)",
            flush=True,
        )


def report(phases: list[Phase], opts: argparse.Namespace, runner: Runner) -> int:
    done = [p for p in phases if p.result is not None]
    print()
    head = (
        f"{'executor':12} {'N':>3} {'calls':>6} {'calls/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'ok':>6} {'wrong':>5} {'failed':>6} {'lost':>4} {'swept':>5} "
        f"{'other CPU':>9}"
    )
    print(head)
    print("-" * len(head))
    for p in done:
        r, lat = p.result, p.result.latencies_ms  # type: ignore[union-attr]
        assert r is not None
        print(
            f"{p.label:12} {opts.concurrency:>3} {r.total:>6} {r.rate:>8.1f} "
            f"{pct(lat, 50):>7.1f} {pct(lat, 95):>7.1f} {pct(lat, 99):>7.1f} {r.ok:>6} "
            f"{r.wrong:>5} {r.failed + r.submit_errors:>6} {r.lost:>4} {r.swept:>5} "
            f"{100 * p.cpu['other'] / p.cpu['wall']:>8.0f}%"
        )
    print("(other CPU: machine CPU used by processes outside this benchmark, in % of one core)\n")
    ours = [p for p in done if p.kind == "ours"]
    naive = next((p for p in done if p.kind == "naive"), None)
    ok = True  # exit status: calls lost or wrong always fail; missed targets only with --strict
    if ours:
        met = ratios(done, ours, naive)
        ok = met or not opts.strict
        results = [p.result for p in ours if p.result is not None]
        total = sum(r.total for r in results)
        good = sum(r.ok for r in results)
        lost = sum(r.lost + r.unsent + r.wrong + r.failed + r.submit_errors for r in results)
        ok = ok and lost == 0
        print(f"ours: {good}/{total} calls returned {EXPECTED}; lost/wrong/failed: {lost}")
        ready = runner.ready_rss.get("ours", (0, 0))[0]
        start, end = ours[0].rss["start"][0], ours[-1].rss["end"][0]
        peak = max(p.rss["peak"][0] for p in ours)
        print(
            f"ours parent RSS: {ready / MIB:.1f} MiB when ready, {start / MIB:.1f} MiB at the "
            f"start of the measured run (after the warm-up), {end / MIB:.1f} MiB at its end "
            f"({(end - start) / MIB:+.1f} MiB over {total} calls), peak {peak / MIB:.1f} MiB; "
            f"forker + spare children {ours[-1].rss['end'][1] / MIB:.1f} MiB at the end"
        )
    polls_line(runner, opts)
    print("\nexecutor parent RSS (MiB): start / end of each measured phase")
    for p in done:
        print(f"  {p.label:12} {p.rss['start'][0] / MIB:6.1f} / {p.rss['end'][0] / MIB:6.1f}")
    print("\nCPU during each measured phase (% of one core; CPU-ms per call):")
    for p in done:
        print(f"  {p.label:12} {format_cpu(p.cpu, p.result.ended)}")  # type: ignore[union-attr]
    capacity_lines(done)
    for kind, notes in runner.notes.items():
        for note in notes:
            print(f"  note [{kind}]: {note}")
    for p in done:
        assert p.result is not None
        if p.result.unsent:
            print(f"  note [{p.label}]: {p.result.unsent} calls never submitted (timed out)")
        for note in p.result.samples:
            print(f"  note [{p.label}]: {note}")
    print(f"\nload average (1 min) at the end: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


def polls_line(runner: Runner, opts: argparse.Namespace) -> None:
    """How many assign long-polls each executor keeps open, next to the calls outstanding."""
    if not runner.polls:
        return
    if "ours" in runner.polls:  # its ready line says how many assigns it keeps in flight
        log = LOG_DIR / f"{runner.run_id}-ours.log"
        found = SERVING.search(log.read_bytes()[: 1 << 20]) if log.exists() else None
        if found is None:
            print("assigns in flight: ours' log does not say (no `serving (` line)")
            return
        runner.polls["ours"] = (int(found.group(1)), int(found.group(2)))
    print(
        "assigns in flight (long-polls): "
        + ", ".join(
            f"{kind} {slots + ahead}" + (f" ({slots} slots + {ahead} ahead)" if ahead else "")
            for kind, (slots, ahead) in runner.polls.items()
        )
        + f"; calls outstanding: {opts.window}"
    )


def pooled_rate(phases: list[Phase]) -> float:
    results = [p.result for p in phases if p.result is not None]
    return sum(r.ended for r in results) / max(sum(r.seconds for r in results), 1e-9)


def ratios(done: list[Phase], ours: list[Phase], naive: Phase | None) -> bool:
    """Print ours against the nulls around it and against naive; True when the targets hold."""
    ok = True
    rate = pooled_rate(ours)
    if len(ours) == 1:
        checks = [
            (p.label, p.result.rate, 0.95)
            for p in done  # type: ignore[union-attr]
            if p.kind == "null"
        ]
    else:  # each ours segment against the mean of the null segments just before and after it
        per_round = []
        for p in ours:
            i = done.index(p)
            around = [
                q.result.rate
                for q in (done[i - 1], done[i + 1] if i + 1 < len(done) else done[i - 1])
                if q.kind == "null" and q.result
            ]
            if around and p.result is not None:
                per_round.append(p.result.rate / (sum(around) / len(around)))
                print(f"  {p.label}: {per_round[-1]:.2f}x the mean of the nulls around it")
        checks = []
        if per_round:
            median = statistics.median(per_round)
            print(
                f"ours / null (median over {len(per_round)} rounds) = {median:5.2f}x  "
                f"(target >= 0.95x: {'met' if median >= 0.95 else 'NOT met'})"
            )
            ok = median >= 0.95
    for label, other, target in checks:
        ratio = rate / other
        ok = ok and ratio >= target
        print(
            f"ours / {label:12} = {ratio:5.2f}x  (target >= {target}x: "
            f"{'met' if ratio >= target else 'NOT met'})"
        )
    if naive is not None and naive.result is not None:
        ratio = rate / naive.result.rate
        ok = ok and ratio >= 3.0
        print(
            f"ours / {'naive':12} = {ratio:5.2f}x  (target >= 3.0x: "
            f"{'met' if ratio >= 3.0 else 'NOT met'})"
        )
    return ok


def capacity_lines(done: list[Phase]) -> None:
    """CPU-ms per call of the FaaS system, and the calls/s the machine's cores allow at that."""
    cores = psutil.cpu_count() or 1
    print(
        f"\nCPU-bound capacity = {cores} cores / CPU-ms per call of server + postgres + minio + "
        f"executor + load generator, + the stack's forward when the server runs in a network "
        f"namespace (`other` left out; the server and postgres also serve any other client "
        f"of the shared stack):"
    )
    per_kind: dict[str, list[float]] = {}
    for p in done:
        assert p.result is not None
        used = sum(v for k, v in p.cpu.items() if k not in ("other", "busy", "wall"))
        ms = 1000 * used / max(p.result.ended, 1)
        per_kind.setdefault(p.kind, []).append(ms)
        print(f"  {p.label:12} {ms:6.2f} CPU-ms/call -> {cores * 1000 / ms:6.1f} calls/s")
    if "ours" in per_kind:
        mean = {k: statistics.mean(v) for k, v in per_kind.items()}
        print(
            "  ours / "
            + ", ours / ".join(f"{k} = {mean[k] / mean['ours']:.2f}x" for k in mean if k != "ours")
            + " (capacity ratios, mean CPU-ms per call of each kind)"
        )


if __name__ == "__main__":
    sys.exit(main())
