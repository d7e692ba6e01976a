"""Soak test against the running local stack: thousands of mixed calls, then the fault drills.

    scripts/stack.sh up && .venv/bin/python bench/soak.py [--quick] [--calls 3000]

Phases: for each executor count in ``--executors`` (default 1,2,4), that many
``faas-sandbox executor --concurrency C`` subprocesses serve their own executor type while
``--submitters`` threads keep ``--window`` calls outstanding (closed loop) until the phase's
share of ``--calls`` has been submitted. The calls mix benign functions, hostile ones and
resource bombs (bench/_catalog.py), each with the outcome it MUST have; ends are seen through
server-pushed WebSocket frames (bench/_load.py's Watcher, backed by a get_process sweeper)
and then every process is read back with get_process and checked:

- lost: not SUCCESS or FAILED at the end (must be 0);
- unexpected: SUCCESS with another output, or FAILED with another kind or reason text;
- per executor: parent RSS and open fds after the warm-up and at the end (flat), exit status 0
  on SIGTERM, no child left behind (forker, sandbox children), and at the very end no process
  of the sandbox uid (65534) orphaned anywhere on the machine;
- calls/s, and CPU of the Colonies server, PostgreSQL, MinIO, executor parents, sandbox
  (forker + children) and this load generator during each phase (psutil).

Then the drills of tests/integration/drills.py and bad_input.py run as steps (``--drills``;
they stop and start stack services briefly, and take turns with other sessions' drills
through a lock).
The report is printed and written to ``.dev/soak/<run>/report.md``; executor logs are next
to it. Exit status 0 when nothing was lost or unexpected, every drill passed, executors
stayed flat and left nothing behind. ``--mix benign --drills none`` measures throughput only
(docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faas_sandbox.kinds import ProcessState

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "integration")]

import bad_input  # noqa: E402  (tests/integration)
import drills  # noqa: E402
import harness  # noqa: E402
from _catalog import CATALOG, Fn, benign_only, pick  # noqa: E402
from _common import REPO, CpuMeter, load_stack_env, pct, stack_pids  # noqa: E402

MIB = 1 << 20
DRILLS = ("bad_input", "stdout", "child", "tmp", "kill9", "s3", "colonies", "postgres")
RSS_GROWTH_LIMIT = 16 * MIB  # "flat": the parent grew less than this after its warm-up
FD_GROWTH_LIMIT = 4  # plus one keep-alive connection per worker thread (fd_allowance)
_FINAL = tuple(state for state in ProcessState if state.final)


class StackServices:
    """scripts/stack.sh for the drills (the same calls as the tests' Stack fixture)."""

    def _sh(self, *args: str) -> None:
        subprocess.run(
            [str(REPO / "scripts" / "stack.sh"), *args],
            cwd=REPO,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def stop(self, service: str) -> None:
        self._sh("stop", service)

    def start(self, service: str) -> None:
        self._sh("start", service)

    def up(self) -> None:
        self._sh("up")


@dataclass
class Job:
    fn: Fn
    name: str
    args: list[Any]
    kwargs: dict[str, Any]
    spec: dict[str, Any]
    pid: str = ""
    submitted: float = 0.0
    ended: float = 0.0
    process: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExecutorStats:
    name: str
    rss_ready: int = 0
    rss_start: int = 0
    rss_mid: int = 0  # half-way through the phase's wall time
    rss_end: int = 0
    rss_peak: int = 0
    fds_start: int = 0
    fds_end: int = 0
    exit_status: int | None = None
    leftovers: list[int] = field(default_factory=list)
    tracebacks: int = 0
    served: int = 0  # "stopped after N call(s)" in its log


@dataclass
class PhaseResult:
    executors: int
    concurrency: int
    jobs: list[Job]
    seconds: float = 0.0
    submit_retries: int = 0
    cpu: dict[str, float] = field(default_factory=dict)
    stats: list[ExecutorStats] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        return self.kinds["SUCCESS"]

    @property
    def failed(self) -> int:
        return sum(n for kind, n in self.kinds.items() if kind != "SUCCESS")

    @property
    def rate(self) -> float:
        return len(self.jobs) / max(self.seconds, 1e-9)


# -- calls ---------------------------------------------------------------------------------------


def deploy(run: str, catalog: list[Fn]) -> dict[str, str]:
    names = {}
    for fn in catalog:
        name = f"{fn.key}_{run}"
        if fn.source:
            harness.upload(name, fn.source.format(name=name).encode())
        names[fn.key] = name
    return names


def make_jobs(
    fns: list[Fn], names: dict[str, str], rng: random.Random, executortype: str
) -> list[Job]:

    jobs = []
    for fn in fns:
        name = names[fn.key]
        args, kwargs = fn.make_args(rng)
        if fn.raw_kwargs is not None:
            kw = {k: v.format(name=name) for k, v in fn.raw_kwargs.items()}
            spec = harness.raw_spec(kw, executortype=executortype, maxexectime=fn.maxexectime)
        else:
            spec = harness.spec(
                name, args, kwargs, executortype=executortype, maxexectime=fn.maxexectime
            )
        jobs.append(Job(fn, name, args, kwargs, spec))
    return jobs


class Load:
    """Submit ``jobs`` from ``submitters`` threads with at most ``window`` outstanding."""

    def __init__(
        self, member: Any, watcher: Any, jobs: list[Job], window: int, submitters: int
    ) -> None:
        self.member, self.watcher, self.jobs = member, watcher, jobs
        self.window, self.submitters = window, submitters
        self.counters: dict[str, int] = {}
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(window)
        self._next = 0
        self._by_pid: dict[str, Job] = {}
        self._early: dict[str, float] = {}
        self._open = len(jobs)
        self._done = threading.Event()

    def run(self, timeout: float) -> None:
        self.watcher.on_end = self._on_end
        threads = [
            threading.Thread(target=self._submitter, daemon=True) for _ in range(self.submitters)
        ]
        threads.append(threading.Thread(target=self._sweeper, daemon=True))
        for thread in threads:
            thread.start()
        self._done.wait(timeout)
        self._done.set()
        self.watcher.on_end = None

    def _submitter(self) -> None:

        while not self._done.is_set():
            if not self._slots.acquire(timeout=0.5):
                continue
            with self._lock:
                if self._next >= len(self.jobs):
                    self._slots.release()
                    return
                job = self.jobs[self._next]
                self._next += 1
            job.submitted = time.perf_counter()
            job.pid = harness.submit(self.member, job.spec, retry_for=120, counters=self.counters)
            with self._lock:
                self._by_pid[job.pid] = job
                when = self._early.pop(job.pid, None)
            if when is not None:
                self._end(job, when)

    def _on_end(self, pid: str, state: int, out: Any, when: float, how: str) -> None:
        with self._lock:
            job = self._by_pid.get(pid)
            if job is None:
                self._early[pid] = when  # the frame came before the submit reply
                return
        self._end(job, when)

    def _end(self, job: Job, when: float) -> None:
        with self._lock:
            if job.ended:
                return
            job.ended = when
            self._open -= 1
            if self._open == 0:
                self._done.set()
        self._slots.release()

    def _sweeper(self) -> None:
        """Back up the WebSocket frames: look up calls open for longer than they can run."""
        while not self._done.wait(1.0):
            now = time.perf_counter()
            with self._lock:
                old = [
                    j
                    for j in self._by_pid.values()
                    if not j.ended and now - j.submitted > j.fn.maxexectime + 10
                ]
            for job in old:
                try:
                    process = self.member.get_process(job.pid)
                except Exception:  # noqa: BLE001 - try again next round
                    continue
                if process.get("state") in _FINAL:
                    self.counters["swept"] = self.counters.get("swept", 0) + 1
                    self._end(job, time.perf_counter())


def verify(member: Any, result: PhaseResult) -> None:
    """Read every process back and compare it with what its function must do."""

    def read(job: Job) -> dict[str, Any]:
        if not job.pid:
            return {}
        process = harness.get(member, job.pid)
        for _ in range(20):  # FAILED before its errors are written (ColoniesClient.wait)
            if process.get("state") != ProcessState.FAILED or process.get("errors"):
                break
            time.sleep(0.1)
            process = harness.get(member, job.pid)
        return process

    with ThreadPoolExecutor(8) as pool:
        processes = list(pool.map(read, result.jobs))
    for job, process in zip(result.jobs, processes, strict=True):
        job.process = process
        state = process.get("state")
        if state not in (ProcessState.SUCCESS, ProcessState.FAILED):
            result.lost.append(f"{job.pid[:12] or '(never submitted)'} {job.fn.key} state={state}")
            result.kinds["LOST"] += 1
            continue
        if state == ProcessState.SUCCESS:
            result.kinds["SUCCESS"] += 1
            want = job.fn.out(job.args, job.kwargs) if job.fn.out else None
            if job.fn.kind or process.get("out") != [want]:
                result.unexpected.append(
                    f"{job.fn.key}{job.args}: SUCCESS out="
                    f"{str(process.get('out'))[:80]} (want "
                    f"{job.fn.kind or repr(want)[:60]})"
                )
            continue
        reason = (process.get("errors") or [""])[0]
        kind = reason.split(":", 1)[0]
        result.kinds[kind] += 1
        if kind != job.fn.kind or job.fn.text not in reason:
            want = job.fn.kind or "SUCCESS"
            result.unexpected.append(
                f"{job.fn.key}: {reason[:160]!r} (want {want} with {job.fn.text!r})"
            )


# -- phases --------------------------------------------------------------------------------------


def run_phase(
    member: Any,
    run: str,
    names: dict[str, str],
    fns: list[Fn],
    count: int,
    opts: argparse.Namespace,
    logdir: Path,
    rng: random.Random,
) -> PhaseResult:
    from _load import Watcher

    executortype = f"soak-{run}-x{count}"
    result = PhaseResult(count, opts.concurrency, make_jobs(fns, names, rng, executortype))
    executors = [
        harness.Executor(
            logdir / f"x{count}-{i}.log",
            executortype,
            name=f"soak-{run}-x{count}-{i}",
            concurrency=opts.concurrency,
        )
        for i in range(count)
    ]
    result.stats = [ExecutorStats(ex.name) for ex in executors]
    try:
        for ex, st in zip(executors, result.stats, strict=True):
            st.rss_ready = ex.usage()[0]
        warm = make_jobs(benign_only() * 2 * count, names, rng, executortype)
        warm_pids = [harness.submit(member, job.spec) for job in warm]
        harness.wait_ended(member, warm_pids, 60)
        for ex, st in zip(executors, result.stats, strict=True):
            st.rss_start, st.fds_start = ex.usage()
            ex.remember_children()
        env = os.environ
        watcher = Watcher(
            env["COLONIES_SERVER_HOST"],
            int(env["COLONIES_SERVER_PORT"]),
            env.get("COLONIES_SERVER_TLS") == "true",
            env["COLONIES_COLONY_NAME"],
            env["COLONIES_PRVKEY"],
            executortype,
        )
        watcher.start()
        pids = stack_pids()
        meter = CpuMeter(
            trees={k: v for k, v in pids.items()},
            split={f"ex{i}": ex.pid for i, ex in enumerate(executors)},
        )
        window = opts.window or 6 * count * opts.concurrency
        load = Load(member, watcher, result.jobs, window, opts.submitters)
        before = meter.sample()
        started = time.perf_counter()
        samples: list[tuple[float, list[int]]] = []
        sampling = threading.Event()

        def sample_rss() -> None:
            while not sampling.wait(0.5):
                with contextlib.suppress(Exception):
                    samples.append((time.perf_counter(), [ex.usage()[0] for ex in executors]))

        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()
        load.run(timeout=opts.phase_timeout)
        sampling.set()
        sampler.join(2)
        ends = [j.ended for j in result.jobs if j.ended]
        result.seconds = (max(ends) if ends else time.perf_counter()) - started
        result.cpu = CpuMeter.delta(before, meter.sample())
        watcher.stop()
        result.submit_retries = load.counters.get("submit_retries", 0)
        middle = started + result.seconds / 2
        mid = min(samples, key=lambda s: abs(s[0] - middle))[1] if samples else []
        for i, (ex, st) in enumerate(zip(executors, result.stats, strict=True)):
            st.rss_end, st.fds_end = ex.usage()
            st.rss_mid = mid[i] if mid else 0
            st.rss_peak = max([st.rss_end, *(s[1][i] for s in samples)])
            ex.remember_children()
        verify(member, result)
    finally:
        for ex, st in zip(executors, result.stats, strict=True):
            st.exit_status = ex.stop()
            st.leftovers = ex.left_after_stop
            log = ex.log()
            st.tracebacks = log.count("Traceback")
            match = re.search(r"stopped after (\d+) call", log)
            st.served = int(match.group(1)) if match else 0
    return result


def cleanup(member: Any, pids: list[str]) -> int:
    """Remove this run's processes from the shared dev database; how many were refused."""

    def remove(pid: str) -> bool:
        try:
            member.rpc("removeprocessmsg", processid=pid, all=False)
            return True
        except Exception:  # noqa: BLE001 - counted
            return False

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(remove, pids)).count(False)


# -- report --------------------------------------------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / MIB:.1f}"


def report(
    phases: list[PhaseResult],
    drill_results: list[Any],
    orphans: list[int],
    opts: argparse.Namespace,
    run: str,
) -> tuple[str, bool]:
    lines = [
        f"# soak {run}: {sum(len(p.jobs) for p in phases)} calls, executors "
        f"{opts.executors}, --concurrency {opts.concurrency}, {opts.submitters} "
        f"submitters, mix {opts.mix}",
        "",
    ]
    kinds = sorted({k for p in phases for k in p.kinds if k != "SUCCESS"})
    head = (
        "| executors | submitted | succeeded | failed | "
        + "".join(f"{k} | " for k in kinds)
        + "lost | unexpected | calls/s | "
        "p50 ms (benign) | p95 ms (benign) |"
    )
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    ok = True
    for p in phases:
        benign = [
            1000 * (j.ended - j.submitted) for j in p.jobs if j.ended and j.fn.group == "benign"
        ]
        lines.append(
            f"| {p.executors} x {p.concurrency} | {len(p.jobs)} | {p.succeeded} | "
            f"{p.failed} | "
            + "".join(f"{p.kinds.get(k, 0)} | " for k in kinds)
            + f"{len(p.lost)} | {len(p.unexpected)} | {p.rate:.1f} | "
            f"{pct(sorted(benign), 50):.0f} | {pct(sorted(benign), 95):.0f} |"
        )
        ok = ok and not p.lost and not p.unexpected
    lines += [
        "",
        "Executor parents (RSS: after registration, after the warm-up, half-way, "
        "at the end, peak):",
        "",
        "| executor | calls | RSS ready MiB | start | mid | end | peak | fds start | "
        "fds end | exit | children left | tracebacks |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        for st in p.stats:
            flat = (
                st.rss_end - st.rss_start <= RSS_GROWTH_LIMIT
                and st.fds_end - st.fds_start <= FD_GROWTH_LIMIT + fd_allowance(p.concurrency)
            )
            ok = ok and flat and st.exit_status == 0 and not st.leftovers and not st.tracebacks
            lines.append(
                f"| {st.name} | {st.served} | {_mib(st.rss_ready)} | "
                f"{_mib(st.rss_start)} | {_mib(st.rss_mid)} | {_mib(st.rss_end)} | "
                f"{_mib(st.rss_peak)} | {st.fds_start} | {st.fds_end} | "
                f"{st.exit_status} | {len(st.leftovers)} | {st.tracebacks} |"
            )
    lines += [
        "",
        "CPU during each phase: % of one core (this machine has "
        f"{os.cpu_count()}), and CPU ms per call:",
        "",
        "| executors | colonies | postgres | minio | executor parents | sandbox (forker+"
        "children) | load generator | other | machine busy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        d, wall, calls = p.cpu, max(p.cpu.get("wall", 0.0), 1e-9), max(len(p.jobs), 1)

        def share(
            *keys: str, d: dict[str, float] = d, wall: float = wall, calls: int = calls
        ) -> str:
            used = sum(v for k, v in d.items() if k.endswith(keys))
            return f"{100 * used / wall:.0f}% ({1000 * used / calls:.1f})"

        lines.append(
            f"| {p.executors} | {share('colonies')} | {share('postgres')} | "
            f"{share('minio')} | {share('-parent')} | {share('-children')} | "
            f"{share('loadgen')} | {share('other')} | {share('busy')} |"
        )
    if drill_results:
        lines += ["", "| drill | result | seconds | what happened |", "|---|---|---|---|"]
        for d in drill_results:
            facts = "; ".join(f"{k}={v}" for k, v in d.facts.items())
            lines.append(
                f"| {d.name} | {'ok' if d.ok else 'FAILED'} | {d.seconds:.1f} | {facts[:600]} |"
            )
            ok = ok and d.ok
    lines += [
        "",
        f"sandbox-uid (65534) processes orphaned on the machine after the run: {len(orphans)}",
    ]
    ok = ok and not orphans
    for p in phases:
        for text in (p.lost + p.unexpected)[:10]:
            lines.append(f"  x{p.executors}: {text}")
    for d in drill_results:
        for problem in d.problems:
            lines.append(f"  {d.name}: {problem[:500]}")
    lines += ["", f"verdict: {'PASS' if ok else 'FAIL'}"]
    return "\n".join(lines), ok


# -- main ----------------------------------------------------------------------------------------


def run_drills(member: Any, which: list[str], workdir: Path) -> list[Any]:
    services = StackServices()
    table = {
        "bad_input": lambda: bad_input.drill_bad_input(member, workdir),
        "stdout": lambda: drills.drill_stdout_tricks(member, workdir),
        "child": lambda: drills.drill_child_sigkill(member, workdir),
        "tmp": lambda: drills.drill_full_tmp(member, workdir),
        "kill9": lambda: drills.drill_kill9_inflight(member, workdir, inflight=3),
        "s3": lambda: drills.drill_s3_down(member, services, workdir),
        "colonies": lambda: drills.drill_service_restart(member, services, workdir, "colonies"),
        "postgres": lambda: drills.drill_service_restart(member, services, workdir, "postgres"),
    }
    results = []
    for name in which:
        print(f"soak: drill {name} ...", flush=True)
        try:
            result = table[name]()
        except Exception as exc:  # noqa: BLE001 - a drill that broke is a failed drill
            result = harness.Drill(name, problems=[f"drill raised {exc!r}"])
            services.up()
        print(f"  {result.summary()[:400]}", flush=True)
        results.append(result)
    return results


def fd_allowance(concurrency: int) -> int:
    """A worker thread opens its connection on its first assign, and a thread may wait for
    a free sandbox slot (executor/ahead.py) until after the warm-up: at most one per worker
    (concurrency + the default --ahead, 2 x concurrency + 2)."""
    return 3 * concurrency + 2


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--calls", type=int, default=3000, help="calls in all phases together")
    ap.add_argument("--quick", action="store_true", help="300 calls (drills unchanged)")
    ap.add_argument("--executors", default="1,2,4", help="executor counts, one phase each")
    ap.add_argument("--concurrency", type=int, default=2, help="--concurrency per executor")
    ap.add_argument("--submitters", type=int, default=4)
    ap.add_argument(
        "--window",
        type=int,
        default=0,
        help="calls outstanding [default: 6 x executors x concurrency]",
    )
    ap.add_argument("--mix", choices=("mixed", "benign"), default="mixed")
    ap.add_argument("--drills", default="all", help=f"all, none or some of {','.join(DRILLS)}")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--phase-timeout", type=float, default=900)
    ap.add_argument("--keep", action="store_true", help="keep the processes in the database")
    opts = ap.parse_args(argv)
    if opts.quick:
        opts.calls = 300
    opts.executors = [int(x) for x in str(opts.executors).split(",") if x]
    opts.drills = (
        list(DRILLS)
        if opts.drills == "all"
        else []
        if opts.drills == "none"
        else opts.drills.split(",")
    )
    unknown = set(opts.drills) - set(DRILLS)
    if unknown:
        ap.error(f"unknown drills {sorted(unknown)}; choose from {DRILLS}")
    return opts


def main(argv: list[str]) -> int:
    opts = parse(argv)
    load_stack_env()

    run = uuid.uuid4().hex[:8]
    logdir = REPO / ".dev" / "soak" / run
    logdir.mkdir(parents=True, exist_ok=True)
    member = harness.member_client()
    catalog = CATALOG if opts.mix == "mixed" else benign_only()
    names = deploy(run, catalog)
    rng = random.Random(opts.seed)
    per_phase = max(1, opts.calls // len(opts.executors))
    print(
        f"soak {run}: {per_phase} calls per phase, executors {opts.executors}, logs {logdir}",
        flush=True,
    )
    phases = []
    for count in opts.executors:
        fns = pick(rng, per_phase, catalog)
        phase = run_phase(member, run, names, fns, count, opts, logdir, rng)
        phases.append(phase)
        print(
            f"  {count} executor(s): {len(phase.jobs)} calls, {phase.succeeded} ok, "
            f"{phase.failed} failed, {len(phase.lost)} lost, {len(phase.unexpected)} "
            f"unexpected, {phase.rate:.1f} calls/s",
            flush=True,
        )
    drill_results = run_drills(member, opts.drills, logdir)
    time.sleep(1.0)
    orphans = harness.orphaned_sandbox_processes()
    text, ok = report(phases, drill_results, orphans, opts, run)
    print()
    print(text)
    (logdir / "report.md").write_text(text + "\n")
    if not opts.keep:
        pids = [j.pid for p in phases for j in p.jobs if j.pid]
        refused = cleanup(member, pids)
        print(
            f"\nremoved {len(pids) - refused} soak processes"
            + (f" ({refused} refused)" if refused else "")
        )
    print(f"report: {logdir / 'report.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
