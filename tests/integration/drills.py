"""Fault drills against the real local stack, as plain functions.

Shared by ``tests/integration/test_drills.py`` (which asserts that a drill found no problem)
and ``bench/soak.py`` (which runs them as steps of the soak and tabulates what happened).
Each drill starts its own ``faas-sandbox executor`` subprocess(es) with a unique executor
type, deploys uniquely named functions, does its damage, and returns a
:class:`~harness.Drill`: the facts it observed and the list of problems (empty when everything
behaved). Every drill restores what it broke before it returns (services started again,
mounts removed, executors stopped); the test fixture ``restore_stack`` runs
``scripts/stack.sh up`` on top. The bad-input drill is in bad_input.py.

Needs root: the full-/tmp drill mounts a tmpfs in a private mount namespace of one executor.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.kinds import ProcessState
from harness import (
    NOBODY,
    Drill,
    Executor,
    Services,
    check_executor_health,
    deploy_echo,
    deploy_nap,
    get,
    outage,
    port_open,
    register_operator,
    served_after,
    spec,
    submit,
    timed,
    unique,
    unregister,
    upload,
    wait_ended,
    wait_until,
)


def drill_kill9_inflight(member: ColoniesClient, workdir: Path, inflight: int = 3) -> Drill:
    """kill -9 of an executor with ``inflight`` calls running: each is requeued by the server
    after its maxexectime and completed by another executor, within maxretries."""
    drill = Drill("kill -9 executor with calls in flight")
    kind = unique("drill-kill-")
    nap = deploy_nap()
    first = second = None
    with timed(drill):
        try:
            first = Executor(workdir / f"{kind}-first.log", kind, concurrency=inflight)
            pids = [
                submit(
                    member,
                    spec(
                        nap,
                        [f"call-{i}"],
                        {"seconds": 1.5},
                        executortype=kind,
                        maxexectime=3,
                        maxretries=2,
                    ),
                )
                for i in range(inflight)
            ]
            first_id = member.get_executor(first.name)["executorid"]

            def all_running() -> bool:
                states = [get(member, p) for p in pids]
                return all(
                    p["state"] == ProcessState.RUNNING and p["assignedexecutorid"] == first_id
                    for p in states
                )

            wait_until(f"{inflight} calls running on the first executor", all_running, 15)

            def calls_running() -> list[psutil.Process]:
                calls = first.running_calls()  # type: ignore[union-attr]
                return calls if len(calls) >= inflight else []

            running = len(
                wait_until(f"{inflight} sandbox children running calls", calls_running, 10)
            )
            first.kill9()
            killed_at = time.monotonic()
            leftovers = first.leftovers(5)
            drill.expect(not leftovers, f"processes left after kill -9: {leftovers}")
            second = Executor(workdir / f"{kind}-second.log", kind, concurrency=inflight)
            second_id = member.get_executor(second.name)["executorid"]
            ended = wait_ended(member, pids, 25)
            done_after = time.monotonic() - killed_at
            for i, pid in enumerate(pids):
                p = ended[pid]
                drill.expect(
                    p["state"] == ProcessState.SUCCESS and p["out"] == [f"call-{i}"],
                    f"{pid[:12]}: state {p['state']} out {p.get('out')} errors {p.get('errors')}",
                )
                drill.expect(
                    p["assignedexecutorid"] == second_id,
                    f"{pid[:12]} not completed by the second executor",
                )
                drill.expect(1 <= p["retries"] <= 2, f"{pid[:12]}: retries {p['retries']}")
            drill.facts.update(
                in_flight=inflight,
                sandbox_calls_running_at_kill=running,
                completed_by_second=sum(ended[p]["assignedexecutorid"] == second_id for p in pids),
                retries=sorted(ended[p]["retries"] for p in pids),
                all_done_s_after_kill=round(done_after, 1),
            )
            check_executor_health(drill, second)
        finally:
            if first is not None:
                first.stop()
                unregister(member, first.name)
            if second is not None:
                status = second.stop()
                drill.expect(status == 0, f"second executor exit status {status}")
    return drill


def drill_service_restart(
    member: ColoniesClient,
    services: Services,
    workdir: Path,
    service: str,
    down_s: float = 2.0,
    load_s: float = 1.5,
    rate: float = 8.0,
) -> Drill:
    """Restart ``service`` (colonies or postgres) while calls are submitted and served:
    the executor reconnects by itself, every call ends SUCCESS exactly once (no requeue),
    closes that failed while it was down are delivered afterwards, and a call the server had
    assigned to it without its knowing (an orphaned assignment) is found and served."""
    drill = Drill(f"{service} restarted mid-run")
    kind = unique(f"drill-{service}-")
    nap = deploy_nap()
    ex = None
    pids: list[str] = []
    counters: dict[str, int] = {}
    stop_load = threading.Event()
    load_errors: list[str] = []

    def load() -> None:
        i = 0
        while not stop_load.is_set():
            try:
                pids.append(
                    submit(
                        member,
                        spec(nap, [i], {"seconds": 0.7}, executortype=kind, maxexectime=60),
                        counters=counters,
                        database_restarts=service == "postgres",
                    )
                )
            except Exception as exc:  # noqa: BLE001 - reported as a problem
                load_errors.append(repr(exc))
                return
            i += 1
            stop_load.wait(1 / rate)

    with timed(drill):
        try:
            # An operator identity, so that the drill can leave a call assigned to it before it
            # starts (what the server does when an assign fails after its UPDATE committed):
            # the executor must find and serve it after the outage.
            name = unique(f"{kind}-")
            key = register_operator(member, name, kind)
            orphan = submit(
                member, spec(nap, ["orphan"], {"seconds": 0.1}, executortype=kind, maxexectime=60)
            )
            assigned = member.with_key(key).assign(5)
            drill.expect(
                assigned and assigned["processid"] == orphan,
                "could not set up the orphaned assignment",
            )
            ex = Executor(workdir / f"{kind}.log", kind, name=name, concurrency=4, operator_key=key)
            mark = len(ex.log())
            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            time.sleep(load_s)
            with outage(services, service):
                in_flight = len(ex.running_calls())
                stopped_at = time.monotonic()
                time.sleep(down_s)
            down_for = time.monotonic() - stopped_at
            time.sleep(load_s)
            stop_load.set()
            loader.join(70)
            drill.expect(not load_errors, f"submitter failed: {load_errors}")
            ended = wait_ended(member, pids, 40)
            states = [p["state"] for p in ended.values()]
            wrong = [
                pid[:12]
                for i, pid in enumerate(pids)
                if ended[pid]["state"] != ProcessState.SUCCESS or ended[pid]["out"] != [i]
            ]
            requeued = [pid[:12] for pid in pids if ended[pid]["retries"] != 0]
            drill.expect(not wrong, f"calls not SUCCESS with their own output: {wrong[:10]}")
            drill.expect(not requeued, f"calls requeued (a close was lost): {requeued[:10]}")
            adopted = wait_ended(member, [orphan], 10)[orphan]
            drill.expect(
                adopted["state"] == ProcessState.SUCCESS
                and adopted["out"] == ["orphan"]
                and adopted["retries"] == 0,
                f"the call left assigned to the executor before the outage: state "
                f"{adopted['state']} retries {adopted['retries']}",
            )
            ex.wait_for_log("colonies reachable again", 15, mark)
            tail = ex.log()[mark:]
            late = _late_deliveries(tail)
            drill.expect(late > 0, "no close was delivered late (none failed while down?)")
            # One line per state change. A stopping PostgreSQL flaps (requests that need no
            # new connection still succeed for a moment), hence a few pairs at most there.
            down, up = tail.count("colonies unreachable"), tail.count("colonies reachable again")
            most = 1 if service == "colonies" else 4
            drill.expect(
                1 <= down <= most and up == down,
                f"{down} 'unreachable' and {up} 'reachable again' lines",
            )
            drill.expect(
                tail.rfind("colonies reachable again") > tail.rfind("unreachable"),
                "the last state change logged is not 'reachable again'",
            )
            check_executor_health(drill, ex, mark)
            drill.facts.update(
                calls=len(pids),
                succeeded=states.count(ProcessState.SUCCESS),
                lost=len(pids)
                - states.count(ProcessState.SUCCESS)
                - states.count(ProcessState.FAILED),
                in_flight_at_stop=in_flight,
                down_s=round(down_for, 1),
                submit_retries=counters.get("submit_retries", 0),
                closes_delivered_late=late,
                requeued=len(requeued),
                outage_log_lines=down,
                adopted=tail.count("its assign reply never came"),
            )
            served_after(drill, member, nap, kind)
        finally:
            stop_load.set()
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
                unregister(member, ex.name)
    return drill


def _late_deliveries(log: str) -> int:
    total = 0
    for line in log.splitlines():
        if "queued result(s) delivered late" in line:
            with contextlib.suppress(ValueError, IndexError):
                total += int(line.split("queued result(s)")[0].split()[-1])
    return total


def drill_s3_down(member: ColoniesClient, services: Services, workdir: Path) -> Drill:
    """MinIO down: a cached function still runs; an uncached one fails as ``unavailable``;
    once MinIO is back, the uncached one runs too."""
    drill = Drill("S3 (MinIO) down")
    kind = unique("drill-s3-")
    cached, uncached = unique("cached_"), unique("uncached_")
    for name in (cached, uncached):
        upload(name, f"def {name}():\n    return '{name}'\n".encode())
    ex = None
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind)
            mark = len(ex.log())

            def call(name: str) -> dict[str, Any]:
                pid = submit(member, spec(name, executortype=kind))
                return wait_ended(member, [pid], 20)[pid]

            drill.expect(call(cached)["out"] == [cached], "cached function before the outage")
            with outage(services, "minio"):
                time.sleep(2.2)  # past the 2 s metadata re-check: the executor looks again
                during_cached = call(cached)
                during_uncached = call(uncached)
                drill.expect(
                    not port_open("minio"),
                    "MinIO was started again during the drill (a `stack.sh up` elsewhere?)",
                )
            drill.expect(
                during_cached["state"] == ProcessState.SUCCESS and during_cached["out"] == [cached],
                f"cached call during the outage: {during_cached.get('errors')}",
            )
            reason = (during_uncached.get("errors") or [""])[0]
            drill.expect(
                during_uncached["state"] == ProcessState.FAILED
                and reason.startswith(f"unavailable: cannot fetch function '{uncached}'"),
                f"uncached call during the outage: {during_uncached['state']} {reason!r}",
            )
            after = call(uncached)
            drill.expect(
                after["state"] == ProcessState.SUCCESS and after["out"] == [uncached],
                f"uncached call after the outage: {after.get('errors')}",
            )
            check_executor_health(drill, ex, mark)
            drill.facts.update(
                cached_during="SUCCESS"
                if during_cached["state"] == ProcessState.SUCCESS
                else "FAILED",
                uncached_during=reason[:90],
                uncached_after="SUCCESS" if after["state"] == ProcessState.SUCCESS else "FAILED",
            )
        finally:
            if ex is not None:
                ex.stop()
    return drill


def drill_child_sigkill(member: ColoniesClient, workdir: Path) -> Drill:
    """SIGKILL from outside to the sandbox child running a call: the call fails as ``crash``,
    the executor keeps serving and its forker keeps no zombie."""
    drill = Drill("sandbox child SIGKILLed from outside")
    kind = unique("drill-child-")
    nap = deploy_nap()
    ex = None
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind)
            mark = len(ex.log())
            pid = submit(member, spec(nap, ["x"], {"seconds": 5}, executortype=kind))
            victims = wait_until("a running sandbox call", ex.running_calls, 15)
            victim = victims[0]
            uid = victim.uids().real
            victim.send_signal(signal.SIGKILL)
            ended = wait_ended(member, [pid], 15)[pid]
            reason = (ended.get("errors") or [""])[0]
            drill.expect(
                ended["state"] == ProcessState.FAILED and reason.startswith("crash: "),
                f"killed call ended {ended['state']} {reason!r}",
            )
            drill.expect(uid == NOBODY, f"the sandbox child ran as uid {uid}")
            served_after(drill, member, nap, kind)
            zombies = [p.pid for p in ex.sandbox_children() if p.status() == psutil.STATUS_ZOMBIE]
            drill.expect(not zombies, f"zombie sandbox children: {zombies}")
            check_executor_health(drill, ex, mark)
            drill.facts.update(child_pid=victim.pid, child_uid=uid, reason=reason[:90])
        finally:
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
    return drill


def _fill(directory: Path) -> int:
    """Fill a filesystem: one file until ENOSPC, then empty files until no inode is left."""
    written = 0
    with contextlib.suppress(OSError), open(directory / "filler", "wb") as f:
        while True:
            f.write(b"x" * 4096)
            f.flush()
            written += 4096
    for i in range(100_000):
        try:
            (directory / f"inode-{i}").touch()
        except OSError:
            break
    return written


def drill_full_tmp(member: ColoniesClient, workdir: Path) -> Drill:
    """The sandbox's temp dirs on a full filesystem: calls fail with a clear reason, the
    executor keeps serving, and it recovers once there is space again.

    The engine does not read TMPDIR: its forker runs with a clean environment and puts the
    children's work dirs under /dev/shm (else the default temp dir, /tmp). So the executor
    runs in a private mount namespace where a 64 KiB tmpfs (64 inodes) is /dev/shm and /tmp;
    nothing changes for anyone else on the machine."""
    drill = Drill("full /tmp (sandbox temp dirs)")
    kind = unique("drill-tmp-")
    echo = deploy_echo()
    tiny = workdir / unique("tinytmp-")
    tiny.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64,mode=1777", "tmpfs", str(tiny)],
        check=True,
    )
    # /tmp is covered too, unless the checkout or its .venv lives there (they must stay visible).
    binds = ["/dev/shm"]
    if not any(
        str(p).startswith("/tmp/")
        for p in (Path(sys.executable).resolve(), Path(__file__).resolve())
    ):
        binds.append("/tmp")
    mounts = " && ".join(f'mount --bind "$0" {b}' for b in binds)
    wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        mounts + ' && exec "$@"',
        str(tiny),
    ]
    ex = None
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind, wrap=wrap, concurrency=4)
            mark = len(ex.log())

            def call(value: int, timeout: float = 20) -> tuple[dict[str, Any], float]:
                started = time.monotonic()
                pid = submit(member, spec(echo, [value], executortype=kind, maxexectime=10))
                return wait_ended(member, [pid], timeout)[pid], time.monotonic() - started

            first, _ = call(1)
            drill.expect(
                first["state"] == ProcessState.SUCCESS,
                f"call before filling: {first.get('errors')}",
            )
            filled = _fill(tiny)
            # Work dirs are empty dirs: they need an inode, no blocks, and each finished call
            # frees one that the next fork reuses. So calls run several at once: the spare
            # takes one, the others need a new work dir and find no inode.
            started = time.monotonic()
            nap = deploy_nap()  # 1 s calls overlap, so freed work dirs cannot be reused in time
            batch = [
                submit(member, spec(nap, [i], executortype=kind, maxexectime=10))
                for i in range(2, 8)
            ]
            ended = wait_ended(member, batch, 20)
            slowest = time.monotonic() - started
            during = [(ended[pid], 0.0) for pid in batch]
            failed = [(p, s) for p, s in during if p["state"] == ProcessState.FAILED]
            reasons = sorted({(p.get("errors") or [""])[0][:120] for p, _ in failed})
            drill.expect(
                all(p["state"] in (ProcessState.SUCCESS, ProcessState.FAILED) for p, _ in during),
                "a call did not end while the temp fs was full",
            )
            drill.expect(failed, "no call failed while the temp fs was full")
            drill.expect(
                all(r.startswith("crash: ") and "No space left" in r for r in reasons),
                f"unclear reasons while full: {reasons}",
            )
            drill.expect(slowest < 10, f"a call took {slowest:.1f}s while full (hang?)")
            drill.expect(ex.alive, "executor died while the temp fs was full")
            for path in tiny.iterdir():
                if path.is_file():
                    path.unlink()
            recovered_in = None
            started = time.monotonic()
            for i in range(10):
                after, _ = call(100 + i)
                if after["state"] == ProcessState.SUCCESS:
                    recovered_in = time.monotonic() - started
                    break
                time.sleep(0.5)
            drill.expect(recovered_in is not None, "no recovery after freeing space")
            check_executor_health(drill, ex, mark)
            drill.facts.update(
                filled_bytes=filled,
                calls_while_full=len(during),
                failed_while_full=len(failed),
                reason=reasons[0] if reasons else "",
                recovered_s=None if recovered_in is None else round(recovered_in, 1),
            )
        finally:
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
            subprocess.run(["umount", str(tiny)], check=False)
            with contextlib.suppress(OSError):
                tiny.rmdir()
    return drill


STDOUT_TRICKS: dict[str, tuple[str, str, str]] = {
    # name suffix: (body, expected state/kind, expected text in out or reason)
    "print_file": (
        "print('x', file=[])\n    return 1",
        "forbidden",
        "print(file=...) is not available",
    ),
    "import_sys": ("import sys\n    sys.stdout.close()\n    return 1", "forbidden", "sys"),
    "flush_end": (
        "print('a', end='', flush=True)\n    print('b', sep='', end='\\n')\n    return 'ok'",
        "SUCCESS",
        "ok",
    ),
    "print_self": ("p = print\n    p('via alias')\n    return 2", "SUCCESS", "2"),
    "flood": ("while True:\n        print('y' * 1000)", "output", "max_stdout_bytes"),
    "close_attr": ("print.close()\n    return 3", "runtime", "AttributeError"),
}


def drill_stdout_tricks(member: ColoniesClient, workdir: Path) -> Drill:
    """Functions that try to close or abuse stdout (they have no sys): each ends cleanly
    with a reason, and the executor keeps serving."""
    drill = Drill("function closes/abuses its stdout")
    kind = unique("drill-stdout-")
    echo = deploy_echo()
    ex = None
    names = {}
    for suffix, (body, _, _) in STDOUT_TRICKS.items():
        name = unique(f"{suffix}_")
        upload(name, f"def {name}():\n    {body}\n".encode())
        names[suffix] = name
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind)
            mark = len(ex.log())
            pids = {
                s: submit(member, spec(n, executortype=kind, maxexectime=5))
                for s, n in names.items()
            }
            ended = wait_ended(member, list(pids.values()), 30)
            seen = {}
            for suffix, pid in pids.items():
                p = ended[pid]
                _, want, text = STDOUT_TRICKS[suffix]
                if p["state"] == ProcessState.SUCCESS:
                    got, detail = "SUCCESS", str(p["out"][0])
                elif p["state"] == ProcessState.FAILED:
                    reason = (p.get("errors") or [""])[0]
                    got, detail = reason.split(":", 1)[0], reason
                else:
                    got, detail = f"state {p['state']}", ""
                seen[suffix] = got
                if want == "*":
                    drill.expect(
                        got == "SUCCESS" or p["state"] == ProcessState.FAILED,
                        f"{suffix}: not ended ({got})",
                    )
                else:
                    drill.expect(
                        got == want and text in detail,
                        f"{suffix}: expected {want} with {text!r}, got {got}: {detail[:150]!r}",
                    )
            served_after(drill, member, echo, kind)
            check_executor_health(drill, ex, mark)
            drill.facts.update(seen)
        finally:
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
    trusted = fd1_closed_in_child()
    drill.expect(trusted.get("ok"), f"trusted helper with fd 1 closed: {trusted}")
    drill.facts["fd1_closed_helper"] = "ok" if trusted.get("ok") else trusted
    return drill


def fd1_closed_in_child() -> dict[str, Any]:
    """Trusted helper: fork, close fds 1 and 2, and run a printing call through the child's
    own ``execute`` (what a sandbox child runs after its isolation). Print output is
    captured in memory, never written to fd 1, so the call must still succeed with its output.
    """
    from faas_sandbox.engine import run, wire
    from faas_sandbox.policy import Limits

    source = b"def chatty(n):\n    for i in range(n):\n        print('line', i)\n    return n\n"
    request = wire.Request(wire.SOURCE, "chatty", frozenset(), Limits(), source, b"[[3],{}]")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_fd)
            os.close(1)
            os.close(2)
            frame = run.execute(request, [b""], lambda code: None)
            wire.write_all(write_fd, frame)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(data) < wire.FRAME.size:
        return {"ok": False, "status": status, "bytes": len(data)}
    res = wire.decode_result(data[wire.FRAME.size :])
    ok = res.kind == "ok" and res.value == b"3" and res.stdout == "line 0\nline 1\nline 2\n"
    return {
        "ok": ok,
        "frame": {"kind": res.kind, "value": res.value.decode(), "stdout": res.stdout},
    }
