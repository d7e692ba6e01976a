"""`make continuum`: the compute continuum on one machine, measured.

A 3-node Colonies cluster (one PostgreSQL), S3 (MinIO), executors on 1, 2 and 4 separate network
hosts (namespaces), the HTTP front end on another, and 0/25/50 ms one-way latency between every
host and the cluster (Toxiproxy). Per row:

- drain: N calls submitted at once (8 threads, directly, no latency) while the executors run:
  calls/s from the first submission to the last close (server clock);
- http: M calls through the front end by 16 concurrent clients: calls/s, p50/p95;
- lost: calls that did not end SUCCESS with the right output (must be 0).

Then drills at 25 ms with 2 executor hosts, each with its numbers: kill -9 the node the
executors use, kill the etcd leader, cut an executor host's link for 20 s, cut it for good,
lose 2 of 3 nodes (and recover). Root only (namespaces). Everything is torn down at the end.

usage: .venv/bin/python bench/continuum.py [--quick] [--no-drills]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests

from _continuum import EXECUTOR_TYPE, World
from faas_sandbox.colonies.client import ColoniesClient, call_spec
from faas_sandbox.errors import ColoniesError
from faas_sandbox.kinds import ProcessState

EXPECTED = [69.8]


def client(world: World) -> ColoniesClient:
    env = world.direct_env()
    return ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        50080,
        False,
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )


def submit_all(member: ColoniesClient, n: int) -> list[str]:
    spec = call_spec(
        "convert",
        [21],
        colony=member.colony,
        maxexectime=5,
        maxretries=3,
        executortype=EXECUTOR_TYPE,
    )

    def one(_: int) -> str:
        for _attempt in range(50):
            try:
                return str(member.submit(spec)["processid"])
            except ColoniesError:
                time.sleep(0.2)
        raise RuntimeError("could not submit")

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _t(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def wait_all(member: ColoniesClient, pids: list[str], timeout: float) -> dict[str, dict]:
    """pid -> final process (or last seen); polls only the ones still open."""
    seen: dict[str, dict] = {}
    open_ = list(pids)
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        still = []
        for pid in open_:
            try:
                seen[pid] = member.get_process(pid)
            except ColoniesError:
                still.append(pid)
                continue
            if seen[pid].get("state") not in (
                ProcessState.SUCCESS,
                ProcessState.FAILED,
                ProcessState.CANCELLED,
            ):
                still.append(pid)
        open_ = still
        if open_:
            time.sleep(0.3)
    return seen


def summarize(procs: dict[str, dict]) -> dict[str, Any]:
    done = [
        p
        for p in procs.values()
        if p.get("state") == ProcessState.SUCCESS and p.get("out") == EXPECTED
    ]
    lost = len(procs) - len(done)
    if not done:
        return {"rate": 0.0, "p50": 0.0, "p95": 0.0, "lost": lost, "retries": 0}
    starts = [_t(p["submissiontime"]) for p in done]
    ends = [_t(p["endtime"]) for p in done]
    lat = sorted(e - s for s, e in zip(starts, ends, strict=True))
    return {
        "rate": len(done) / max(1e-3, max(ends) - min(starts)),
        "p50": lat[len(lat) // 2] * 1000,
        "p95": lat[int(len(lat) * 0.95) - 1] * 1000,
        "lost": lost,
        "retries": sum(int(p.get("retries") or 0) for p in procs.values()),
        "ends": sorted(ends),
    }


def drain(world: World, n: int) -> dict[str, Any]:
    """n calls submitted at once (8 threads, directly, no latency) while the executors run:
    calls/s from the first submission to the last close (server clock)."""
    member = client(world)
    pids = submit_all(member, n)
    return summarize(wait_all(member, pids, 180))


def http_load(url: str, n: int, clients: int = 16) -> dict[str, Any]:
    lat: list[float] = []
    bad = 0
    lock = threading.Lock()
    left = iter(range(n))

    def worker() -> None:
        nonlocal bad
        session = requests.Session()
        session.trust_env = False
        while True:
            with lock:
                if next(left, None) is None:
                    return
            t0 = time.monotonic()
            try:
                reply = session.get(f"{url}/convert", params={"celsius": "21"}, timeout=60)
                ok = reply.status_code == 200 and reply.json() == {"fahrenheit": EXPECTED}
                why = f"HTTP {reply.status_code}: {reply.text[:200]}"
            except requests.RequestException as exc:
                ok, why = False, str(exc)[:200]
            with lock:
                if ok:
                    lat.append(time.monotonic() - t0)
                else:
                    bad += 1
                    if bad <= 3:
                        print(f"  http call failed: {why}", flush=True)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - started
    lat.sort()
    if not lat:
        return {"rate": 0.0, "p50": 0.0, "p95": 0.0, "lost": bad}
    return {
        "rate": len(lat) / took,
        "p50": lat[len(lat) // 2] * 1000,
        "p95": lat[int(len(lat) * 0.95) - 1] * 1000,
        "lost": bad,
    }


def latency_tolerance(world: World, n: int) -> list[str]:
    """One executor host, assigning ahead or not (--ahead 0: one assign per sandbox slot):
    drain rate at 0 and 25 ms one way, and their ratio, measured back to back."""
    out = [
        "| executor (1 host, concurrency 2) | 0 ms calls/s | 25 ms calls/s | 25/0 ratio |",
        "|---|---|---|---|",
    ]
    for label, flags in (
        ("--ahead 0 (a thread per slot)", ("--ahead", "0")),
        ("default (assigns ahead)", ()),
    ):
        world.start_executor("ex1", *flags)
        rates = []
        for ms in (0, 25):
            world.latency(ms)
            drain(world, 8)
            rates.append(drain(world, n)["rate"])
        world.stop("ex1")
        line = f"| {label} | {rates[0]:.1f} | {rates[1]:.1f} | {rates[1] / rates[0]:.2f} |"
        print(line, flush=True)
        out.append(line)
    return out


def rows(world: World, url: str, n_drain: int, n_http: int) -> list[str]:
    out = [
        "| exec hosts | one-way ms | drain calls/s | http calls/s | http p50/p95 ms | lost | "
        "load avg |",
        "|---|---|---|---|---|---|---|",
    ]
    running = 0
    for hosts in (1, 2, 4):
        while running < hosts:
            running += 1
            world.start_executor(f"ex{running}")
        for ms in (0, 25, 50):
            world.latency(ms)
            drain(world, 8)  # warm: code cached, connections open
            d = drain(world, n_drain)
            h = http_load(url, n_http)
            line = (
                f"| {hosts} | {ms} | {d['rate']:.1f} | "
                f"{h['rate']:.1f} | {h['p50']:.0f} / {h['p95']:.0f} | "
                f"{d['lost'] + h['lost']} | {os.getloadavg()[0]:.1f} |"
            )
            print(line, flush=True)
            out.append(line)
    for host in range(3, running + 1):  # the drills use ex1 and ex2
        world.stop(f"ex{host}")
    return out


def largest_gap(ends: list[float], after: float) -> float:
    later = [e for e in ends if e >= after - 5]
    gaps = [b - a for a, b in itertools.pairwise(later)]
    return max(gaps, default=0.0)


def successful(member: ColoniesClient) -> int:
    for _attempt in range(100):
        try:
            stats = member.rpc("getcolonystatsmsg", colonyname=member.colony)
            return int(stats.get("successfulprocesses", 0))
        except ColoniesError:
            time.sleep(0.1)
    return -1


def drill(world: World, title: str, n: int, action: Any, fraction: float = 0.33) -> str:
    """Submit n calls, act once ``fraction`` of them are done, wait for all; one table row:
    lost, failed, retries, the longest pause between two completions around the action
    (how long the cluster did not complete calls), and the time from the action to the last
    completion."""
    member = client(world)
    before = successful(member)
    fired: dict[str, Any] = {}

    def trigger() -> None:  # acts mid-drain, while submissions may still be going on
        watcher = client(world)
        deadline = time.monotonic() + 120
        while successful(watcher) < before + n * fraction and time.monotonic() < deadline:
            time.sleep(0.05)
        fired["done"] = successful(watcher) - before
        fired["at"] = time.time()
        fired["note"] = action() or ""

    thread = threading.Thread(target=trigger)
    thread.start()
    pids = submit_all(member, n)
    thread.join()
    at_action, acted, note = fired["done"], fired["at"], fired["note"]
    procs = wait_all(member, pids, 240)
    s = summarize(procs)
    ends = s.get("ends", [])
    if callable(note):  # a note that needs the completion times
        note = note(ends)
    all_done = (max(ends) - acted) if ends else float("nan")
    failed = sum(1 for p in procs.values() if p.get("state") == ProcessState.FAILED)
    line = (
        f"| {title} | {n} | {at_action} | {s['lost']} | {failed} | {s['retries']} | "
        f"{largest_gap(ends, acted):.1f} | {all_done:.1f} | {note} |"
    )
    print(line, flush=True)
    return line


def cluster_colony(world: World) -> str:
    return str(world.cluster.client_env()["COLONIES_COLONY_NAME"])


def leader(world: World) -> int:
    """Index of the etcd leader (getclustermsg, as the server owner)."""
    for i in range(3):
        if not world.cluster.alive(i):
            continue
        owner = ColoniesClient(world.cluster.transport(i), "", world.cluster.keys["server"])
        try:
            name = owner.rpc("getclustermsg")["leader"]["name"]
            return int(name.removeprefix("node")) - 1
        except (ColoniesError, KeyError, TypeError, ValueError):
            continue
    raise RuntimeError("no leader known")


def drills(world: World) -> list[str]:
    cluster = world.cluster
    world.latency(25)
    out = [
        "| drill (25 ms, 2 executor hosts) | calls | done before | lost | failed | retries | "
        "longest pause s | action to last call s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def kill_node1() -> str:
        cluster.kill(0)
        return "node 1 (ex1's and the front end's first node) killed"

    out.append(drill(world, "kill -9 the node in use", 600, kill_node1))
    cluster.start_node(0)
    cluster.wait_quorum()

    def kill_leader() -> str:
        victim = leader(world)
        cluster.kill(victim)
        kill_leader.victim = victim  # type: ignore[attr-defined]
        return f"leader node {victim + 1} killed"

    out.append(drill(world, "kill -9 the etcd leader", 600, kill_leader))
    cluster.start_node(kill_leader.victim)  # type: ignore[attr-defined]
    cluster.wait_quorum()

    member_ = client(world)

    def cut_20s() -> Any:
        offset = world.log("ex1").stat().st_size
        world.net.cut("ex1")
        time.sleep(20)
        world.net.restore("ex1")
        restored = time.time()
        back = world.log("ex1").stat().st_size
        deadline = time.monotonic() + 30
        while (
            "reachable again" not in world.log("ex1").read_text(errors="replace")[back:]
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        again = time.time() - restored
        time.sleep(6)  # its queued closes go out with backoff
        text = world.log("ex1").read_text(errors="replace")
        served_after = len(wait_all(member_, submit_all(member_, 60), 60))
        ex1_ok = world.log("ex1").read_text(errors="replace")[len(text) :].count(" ok in ")
        text = text[offset:]
        return (
            f"ex1 link down 20 s; it reached Colonies {again:.1f} s after the restore; its "
            f"log: {text.count('delivered late')} 'delivered late' line(s), "
            f"{text.count('refused by the server, dropped')} late close(s) refused (the "
            f"calls had been requeued and run elsewhere); of {served_after} calls submitted "
            f"after, ex1 ran {ex1_ok}"
        )

    out.append(drill(world, "cut ex1 for 20 s", 600, cut_20s, fraction=0.1))

    def cut_for_good() -> str:
        world.net.cut("ex1")
        return "ex1 link down for good"

    out.append(drill(world, "cut ex1 for good", 300, cut_for_good))
    world.stop("ex1")

    def lose_two() -> Any:
        before = successful(client(world))
        cluster.kill(1)
        cluster.kill(2)
        killed = time.time()
        time.sleep(3)
        try:  # does the survivor still take submits without a quorum?
            client(world).submit(
                call_spec(
                    "convert",
                    [21],
                    colony=cluster_colony(world),
                    maxexectime=5,
                    maxretries=3,
                    executortype=EXECUTOR_TYPE,
                )
            )
            submit = "a submit meanwhile was taken"
        except ColoniesError as exc:
            submit = f"a submit meanwhile failed ({str(exc)[:60]})"
        time.sleep(12)
        done_without = successful(client(world)) - before
        restart = time.time()
        cluster.start_node(1)
        healthy = time.time()

        def note(ends: list[float]) -> str:
            during = sum(1 for e in ends if killed + 2 < e < restart)
            first = min((e for e in ends if e > restart), default=float("nan"))
            return (
                f"nodes 2+3 killed: {during} calls ended 2-15 s after; node 2 restarted "
                f"(healthy in {healthy - restart:.1f} s): first call ended "
                f"{first - restart:.1f} s after the restart began ({done_without} done "
                f"in the 15 s; {submit})"
            )

        return note

    out.append(drill(world, "lose 2 of 3 nodes, 15 s, one back", 200, lose_two))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls per row")
    parser.add_argument("--no-drills", action="store_true")
    parser.add_argument("--drills-only", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("continuum: needs root (network namespaces)", file=sys.stderr)
        return 2
    n_drain, n_http = (100, 80) if args.quick else (300, 200)
    # SIGTERM and SIGINT (ignored in background jobs otherwise) end the run through the
    # `finally` below, which tears everything down: Python's own KeyboardInterrupt handler.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    world = World()
    try:
        world.open()
        url = world.start_front_end()
        if args.drills_only:
            world.start_executor("ex1")
            world.start_executor("ex2")
            table = []
        else:
            tolerance = latency_tolerance(world, n_drain)
            table = [*tolerance, "", *rows(world, url, n_drain, n_http)]
        extra = [] if args.no_drills else drills(world)
    finally:
        world.close()
    print("\n" + "\n".join(table))
    if extra:
        print("\n" + "\n".join(extra))
    return 0


if __name__ == "__main__":
    sys.exit(main())
