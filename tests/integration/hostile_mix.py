"""A hostile mix next to benign calls, against one real executor (bench/hostile_soak.py prints
it; test_hostile_soak.py runs a short one).

The executor's configured store is a loopback stand-in (hostile_pull.LoopbackStore) that
answers the benign function's object at once and drips every other object one byte at a time.
Three phases of ``seconds`` each: benign only, benign + hostile, benign only again. Benign
calls (closed loop, ``benign_threads`` submitters) alternate a ColonyFS function (cached) and
inline code; each hostile kind has one closed-loop submitter:

- ``deep``: a raw submit whose spec.args nests 2,000 deep (expect ``spec`` at once);
- ``foreign``: metadata naming another store (expect ``not_found``; the foreign store must see
  no request at all);
- ``slow``: metadata naming the configured store, whose object drips (expect ``unavailable``
  at the call's 2 s deadline);
- ``nul``: inline code printing and raising text with NUL (expect ``runtime`` with ``\\x00``);
- ``extra`` (a control, not hostile): benign inline calls from such a submitter, so a run with
  ``extra,extra,extra,extra`` shows what the same number of extra submitters costs the benign
  calls on a shared machine.

Every submitted call must end with its expected kind ("nothing lost"); benign latency is
measured submit -> end seen (20 ms polls; a deep call is polled every 2 s, since the server
writes it out as ~8 MB); the executor parent's RSS is sampled every second and its CPU time
(parent only: the sandbox children are not its threads) per phase.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

import harness
import hostile_pull as hp
from faas_sandbox.kinds import ProcessState

SERVER_DEADLINE = "Maximum execution time limit exceeded"  # Colonies' own failure text
GOOD = b"def convert(celsius):\n    return (celsius * 9 / 5) + 32\n"
NUL = "def nul():\n    print('a' + chr(0) + 'b')\n    raise ValueError('x' + chr(0) + 'y')\n"


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    cpu_s: float = 0.0  # the executor parent's CPU time during the phase


@dataclass
class MixResult:
    phases: list[Phase]
    lost: list[str]
    unexpected: list[str]
    rss_mib: list[float]
    foreign_requests: int
    executor_alive: bool
    healthz: int
    loadavg: tuple[float, float, float]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(result: MixResult) -> list[str]:
    lines = [
        f"{'phase':<16}{'benign':>8}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
        f"{'exec CPU s':>11}  hostile ends"
    ]
    for phase in result.phases:
        lat = [x * 1000 for x in phase.latencies]
        hostile = (
            ", ".join(
                f"{k} {n}" for k, n in sorted(phase.kinds.items()) if not k.startswith("benign")
            )
            or "-"
        )
        lines.append(
            f"{phase.name:<16}{len(lat):>8}{_pct(lat, 0.5):>9.1f}{_pct(lat, 0.95):>9.1f}"
            f"{max(lat, default=float('nan')):>9.1f}{phase.cpu_s:>11.2f}  {hostile}"
        )
    base, mixed = result.phases[0].latencies, result.phases[1].latencies
    lines.append(
        f"benign p50 with hostile / alone: {_pct(mixed, 0.5) / _pct(base, 0.5):.2f}x, "
        f"p95: {_pct(mixed, 0.95) / _pct(base, 0.95):.2f}x"
    )
    rss = result.rss_mib
    lines.append(
        f"executor RSS MiB: start {rss[0]:.1f}, after phase 1 "
        f"{rss[len(rss) // 3]:.1f}, peak {max(rss):.1f}, end {rss[-1]:.1f}"
    )
    lines.append(
        f"lost {len(result.lost)}, unexpected {len(result.unexpected)}, "
        f"foreign store requests {result.foreign_requests}, executor alive "
        f"{result.executor_alive}, /healthz {result.healthz}, load average "
        f"{' '.join(f'{x:.2f}' for x in result.loadavg)}"
    )
    return lines


KINDS = ("deep", "foreign", "slow", "nul")


def run(
    log_path: Path,
    seconds: float = 20.0,
    benign_threads: int = 2,
    concurrency: int = 4,
    kinds: tuple[str, ...] = KINDS,
) -> MixResult:
    """Run the three phases against a fresh executor; see the module docstring."""
    suffix = uuid.uuid4().hex[:8]
    kind = f"faas-mix-{suffix}"
    member = harness.member_client()
    good, slow, stolen = f"good_{suffix}", f"slow_{suffix}", f"stolen_{suffix}"
    source = GOOD.replace(b"convert", good.encode())
    store = hp.LoopbackStore(body=source, drip_s=0.5, instant_keys={"good"})
    foreign = hp.LoopbackStore()
    port = hp.free_port()
    hp.add_meta(
        member,
        good,
        server="127.0.0.1",
        port=store.port,
        bucket="faas",
        obj="good",
        checksum=hp.sha256(source),
        size=len(source),
    )
    hp.add_meta(
        member,
        slow,
        server="127.0.0.1",
        port=store.port,
        bucket="faas",
        obj="slow",
        checksum=hp.sha256(b"x"),
    )
    hp.add_meta(
        member,
        stolen,
        server="127.0.0.1",
        port=foreign.port,
        bucket="faas",
        obj="x",
        checksum=hp.sha256(foreign.body),
    )
    env = {"AWS_S3_ENDPOINT": store.endpoint, "AWS_S3_BUCKET": "faas"}
    phases = [Phase("benign alone"), Phase("with hostile"), Phase("benign after")]
    current: list[Phase] = [phases[0]]
    lost: list[str] = []
    unexpected: list[str] = []
    rss: list[float] = []
    stop = threading.Event()
    hostile_on = threading.Event()
    lock = threading.Lock()

    def finish(pid: str, label: str, expect: str, started: float, timeout: float) -> None:
        process: dict[str, Any] = {}
        while time.monotonic() - started < timeout:
            process = harness.get(member, pid) if label != "deep" else hp.get_deep(member, pid)
            if process["state"] == ProcessState.SUCCESS or (
                process["state"] == ProcessState.FAILED and process["errors"]
            ):
                break
            time.sleep(0.02 if label != "deep" else 2.0)  # a deep process reads as ~8 MB
        else:
            with lock:
                lost.append(f"{label} {pid} state {process.get('state')}")
            return
        took = time.monotonic() - started
        got = (
            "ok" if process["state"] == ProcessState.SUCCESS else process["errors"][0].split(":")[0]
        )
        if label == "slow" and process["errors"] == [SERVER_DEADLINE]:
            label = got = expect = "slow, ended by the server"  # our fail came after its
            # maxexectime (the 0.25 s close margin, on a machine loaded far beyond its cores)
        with lock:
            phase = current[0]
            phase.kinds[label] += 1
            if got != expect or (label == "nul" and "\\x00" not in process["errors"][0]):
                unexpected.append(f"{label} {pid}: {process.get('errors') or process['out']}")
            if label.startswith("benign"):
                phase.latencies.append(took)

    def benign(index: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 2:
                spec = harness.spec(good, [21], executortype=kind)
            else:
                spec = hp.inline_spec(GOOD.decode(), "convert", [21], executortype=kind)
            started = time.monotonic()
            finish(harness.submit(member, spec), f"benign{n % 2}", "ok", started, 30)

    def hostile(label: str) -> None:
        while not stop.is_set():
            if not hostile_on.wait(0.1):
                continue
            started = time.monotonic()
            if label == "deep":
                pid, expect = hp.submit_deep(member, kind, 2000, maxexectime=60), "spec"
            elif label == "foreign":
                pid = harness.submit(member, harness.spec(stolen, [1], executortype=kind))
                expect = "not_found"
            elif label == "slow":
                pid = harness.submit(
                    member, harness.spec(slow, [1], executortype=kind, maxexectime=2)
                )
                expect = "unavailable"
            elif label == "nul":
                pid = harness.submit(member, hp.inline_spec(NUL, "nul", [], executortype=kind))
                expect = "runtime"
            else:  # "extra": a control, benign load from a hostile submitter's slot
                pid = harness.submit(
                    member, hp.inline_spec(GOOD.decode(), "convert", [1], executortype=kind)
                )
                expect = "ok"
            finish(pid, label, expect, started, 60)

    with hp.executor(
        log_path, kind, "--metrics-port", str(port), env=env, concurrency=concurrency
    ) as ex:
        proc = psutil.Process(ex.pid)
        threads = [
            threading.Thread(target=benign, args=(i,), daemon=True) for i in range(benign_threads)
        ]
        threads += [threading.Thread(target=hostile, args=(label,), daemon=True) for label in kinds]
        for thread in threads:
            thread.start()
        for index, phase in enumerate(phases):
            with lock:
                current[0] = phase
            if index == 1:
                hostile_on.set()
            elif index == 2:
                hostile_on.clear()
            end = time.monotonic() + seconds
            cpu = proc.cpu_times()
            while time.monotonic() < end:
                rss.append(proc.memory_info().rss / 2**20)
                time.sleep(1.0)
            now = proc.cpu_times()
            phase.cpu_s = now.user + now.system - cpu.user - cpu.system
        stop.set()
        for thread in threads:
            thread.join(90)
        rss.append(proc.memory_info().rss / 2**20)
        status, _ = hp.healthz(port)
        alive = ex.alive
    store.close()
    foreign.close()
    return MixResult(
        phases, lost, unexpected, rss, foreign.requests, alive, status, os.getloadavg()
    )
