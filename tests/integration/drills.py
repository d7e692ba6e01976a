"""Fault and bad-input drills against the real local stack, as plain functions.

Shared by ``tests/integration/test_drills.py`` (which asserts that a drill found no problem)
and ``bench/soak.py`` (which runs them as steps of the soak and tabulates what happened).
Each drill starts its own ``faas-sandbox executor`` subprocess(es) with a unique executor
type, deploys uniquely named functions, does its damage, and returns a :class:`Drill`: the
facts it observed and the list of problems (empty when everything behaved). Every drill
restores what it broke before it returns (services started again, mounts removed,
executors stopped); the test fixture ``restore_stack`` runs ``scripts/stack.sh up`` on top.

Needs the stack's client variables in ``os.environ`` (``.dev/stack.env``) and root (the
full-/tmp drill mounts a tmpfs in a private mount namespace of one executor).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import requests

from faas_sandbox.colonies import (
    FAILED,
    RUNNING,
    SUCCESS,
    ColoniesClient,
    FastColonies,
    call_spec,
    sign,
)
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534  # the sandbox children's uid (policy default)
LABEL = "/faas"


class Services(Protocol):
    """What a drill needs to break and repair the stack (conftest's Stack has it)."""

    def stop(self, service: str) -> None: ...
    def start(self, service: str) -> None: ...
    def up(self) -> None: ...


STATE_DIR = Path(os.environ.get("FAAS_SANDBOX_HOME", "~/.cache/faas-sandbox")).expanduser() / \
    "state"
PORTS = {"colonies": 50080, "postgres": 55432, "minio": 9000}  # docs/team-notes.md


@contextlib.contextmanager
def outage(services: Services, service: str) -> Iterator[None]:
    """``service`` stopped for the body, then started again (``up`` if that fails).

    Drills of different sessions on this machine (the stack is shared) take turns through a
    lock file, so one session's drill never starts a service while another's has stopped
    PostgreSQL, for example."""
    import fcntl

    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "drills.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        services.stop(service)
        try:
            yield
        finally:
            try:
                services.start(service)
            except Exception:  # noqa: BLE001 - e.g. someone else stopped postgres meanwhile
                services.up()


def port_open(service: str) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", PORTS[service])) == 0


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# -- clients, code, calls --------------------------------------------------------------------

def member_client() -> ColoniesClient:
    env = os.environ
    return ColoniesClient.connect(env["COLONIES_SERVER_HOST"], int(env["COLONIES_SERVER_PORT"]),
                                  env.get("COLONIES_SERVER_TLS") == "true",
                                  env["COLONIES_COLONY_NAME"], env["COLONIES_PRVKEY"])


def upload(name: str, data: bytes) -> None:
    """Put raw bytes at ColonyFS /faas/NAME the tutorial's way (pycolonies upload_data)."""
    env = os.environ
    sdk = FastColonies(env["COLONIES_SERVER_HOST"], int(env["COLONIES_SERVER_PORT"]),
                       env.get("COLONIES_SERVER_TLS") == "true")
    sdk.upload_data(env["COLONIES_COLONY_NAME"], env["COLONIES_PRVKEY"], filename=name,
                    data=data, label=LABEL)


def spec(function: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
         executortype: str, maxexectime: int = 10, maxretries: int = 0) -> dict[str, Any]:
    return call_spec(function, args, kwargs, colony=os.environ["COLONIES_COLONY_NAME"],
                     maxexectime=maxexectime, maxretries=maxretries, executortype=executortype)


def raw_spec(kwargs: Any, *, executortype: str, funcname: str = "execute", args: Any = None,
             maxexectime: int = 10, env: Any = None) -> dict[str, Any]:
    """A spec built by hand (what a Go or raw-HTTP client could send), not by call_spec."""
    return {"nodename": "execute", "funcname": funcname, "args": args if args is not None else [],
            "kwargs": kwargs, "priority": 0, "maxwaittime": -1, "maxexectime": maxexectime,
            "maxretries": 0, "label": "", "env": env or {},
            "conditions": {"colonyname": os.environ["COLONIES_COLONY_NAME"],
                           "executortype": executortype}}


def submit(member: ColoniesClient, the_spec: dict[str, Any], retry_for: float = 60.0,
           counters: dict[str, int] | None = None) -> str:
    """Submit; while the server is down (or its database), retry until ``retry_for`` passes."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return str(member.submit(the_spec)["processid"])
        except ColoniesUnreachable:
            if counters is not None:
                counters["submit_retries"] = counters.get("submit_retries", 0) + 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def submit_raw_payload(member: ColoniesClient, payload: bytes) -> dict[str, Any]:
    """POST a submitfuncspecmsg whose payload is these exact bytes (e.g. invalid UTF-8)."""
    text = base64.b64encode(payload).decode()
    body = json.dumps({"payloadtype": "submitfuncspecmsg", "payload": text,
                       "signature": sign(text, member.prvkey)})
    reply = requests.post(member.sdk.url, data=body, timeout=10)
    envelope = reply.json()
    content = json.loads(base64.b64decode(envelope["payload"]))
    if envelope.get("error"):
        raise ColoniesRefused(str(content.get("message")), reply.status_code)
    return dict(content)


def get(member: ColoniesClient, pid: str) -> dict[str, Any]:
    """get_process, riding out an outage."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return member.get_process(pid)
        except ColoniesUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_ended(member: ColoniesClient, pids: Sequence[str], timeout: float,
               poll: float = 0.1) -> dict[str, dict[str, Any]]:
    """pid -> process, once every pid is SUCCESS/FAILED/CANCELLED or ``timeout`` passed (then
    the last state seen)."""
    deadline = time.monotonic() + timeout
    seen: dict[str, dict[str, Any]] = {}
    open_ = list(pids)
    while True:
        still = []
        for pid in open_:
            process = get(member, pid)
            seen[pid] = process
            if process.get("state") not in (SUCCESS, FAILED, 4):
                still.append(pid)
        open_ = still
        if not open_ or time.monotonic() > deadline:
            return seen
        time.sleep(poll)


def wait_until(what: str, test: Callable[[], Any], timeout: float, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = test()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(poll)


# -- executors ---------------------------------------------------------------------------------

class Executor:
    """A ``faas-sandbox executor`` subprocess (self-registered) with its log in a file."""

    def __init__(self, log_path: Path, executor_type: str, *flags: str, name: str | None = None,
                 concurrency: int = 2, cwd: Path = REPO, wrap: Sequence[str] = (),
                 ready_timeout: float = 60) -> None:
        self.name = name or unique(f"{executor_type}-")
        self.type, self.log_path = executor_type, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        env = {**os.environ, "FAAS_SANDBOX_LOG_LEVEL": "INFO"}
        argv = [*wrap, sys.executable, "-m", "faas_sandbox", "executor", "--identity", "self",
                "--name", self.name, "--executor-type", executor_type,
                "--concurrency", str(concurrency), "--grace", "5", "--assign-timeout", "5",
                *flags]
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.known_children: set[int] = set()
        self.wait_for_log("serving", ready_timeout)
        self.remember_children()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if self.proc.poll() is not None:
                raise AssertionError(f"executor {self.name} exited {self.proc.returncode} "
                                     f"waiting for {text!r}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"executor {self.name}: no {text!r} within {timeout}s:\n"
                                     f"{self.log()[-3000:]}")
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def forker(self) -> psutil.Process | None:
        with contextlib.suppress(psutil.Error):
            for child in self.ps().children():
                if "faas_sandbox.forker" in " ".join(child.cmdline()):
                    return child
        return None

    def sandbox_children(self) -> list[psutil.Process]:
        """The forker's children: spares ("faas-spare") and running calls ("faas-call")."""
        forker = self.forker()
        if forker is None:
            return []
        with contextlib.suppress(psutil.Error):
            return forker.children()
        return []

    def running_calls(self) -> list[psutil.Process]:
        out = []
        for proc in self.sandbox_children():
            with contextlib.suppress(psutil.Error):
                if proc.name() == "faas-call":
                    out.append(proc)
        return out

    def remember_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.known_children.update(p.pid for p in self.ps().children(recursive=True))

    def usage(self) -> tuple[int, int]:
        """(RSS bytes, open fds) of the executor parent."""
        proc = self.ps()
        return proc.memory_info().rss, proc.num_fds()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait; SIGKILL whatever is left of its session. The exit status."""
        self.remember_children()
        status = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            self._cleanup()
        return status

    def kill9(self) -> None:
        """SIGKILL the executor alone, as a crash would (its forker sees EOF and follows)."""
        self.remember_children()
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def leftovers(self, timeout: float = 5.0) -> list[int]:
        """Pids of its children (forker, sandbox children) still alive after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            alive = [pid for pid in self.known_children if _alive(pid)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def _cleanup(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def orphaned_sandbox_processes() -> list[int]:
    """Processes of the sandbox uid whose forker is gone (reparented to init)."""
    out = []
    for proc in psutil.process_iter(["uids", "ppid"]):
        with contextlib.suppress(psutil.Error, TypeError):
            if proc.info["uids"].real == NOBODY and proc.info["ppid"] == 1:
                out.append(proc.pid)
    return out


def unregister(member: ColoniesClient, name: str) -> None:
    """Remove an executor that died without unregistering (kill -9)."""
    with contextlib.suppress(ColoniesRefused, ColoniesUnreachable):
        member.remove_executor(name, os.environ["COLONIES_COLONY_PRVKEY"])


# -- results -----------------------------------------------------------------------------------

@dataclass
class Drill:
    """What one drill saw: facts (for the table) and problems (empty when all was well)."""

    name: str
    facts: dict[str, Any] = field(default_factory=dict)  # short: one table cell in all
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)  # long: per case

    def expect(self, ok: Any, problem: str) -> bool:
        if not ok:
            self.problems.append(problem)
        return bool(ok)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        facts = ", ".join(f"{k}={v}" for k, v in self.facts.items())
        verdict = "ok" if self.ok else "PROBLEMS: " + "; ".join(self.problems)
        return f"{self.name}: {verdict} ({self.seconds:.1f}s) {facts}"


@contextlib.contextmanager
def timed(drill: Drill) -> Iterator[Drill]:
    started = time.monotonic()
    try:
        yield drill
    finally:
        drill.seconds = time.monotonic() - started


def check_executor_health(drill: Drill, ex: Executor, since: int = 0) -> None:
    tail = ex.log()[since:]
    drill.expect(ex.alive, f"executor {ex.name} exited with {ex.proc.returncode}")
    drill.expect("Traceback" not in tail, f"traceback in executor log:\n{tail[-2000:]}")
    drill.expect("can no longer assign" not in tail, "executor gave up assigning")


def served_after(drill: Drill, member: ColoniesClient, function: str, executortype: str,
                 value: int = 7, timeout: float = 20) -> None:
    """The executor keeps serving: ``function(value)`` (returns its argument) succeeds."""
    pid = submit(member, spec(function, [value], executortype=executortype))
    ended = wait_ended(member, [pid], timeout)[pid]
    drill.expect(ended["state"] == SUCCESS and ended["out"] == [value],
                 f"benign call after the drill: state {ended['state']} out {ended.get('out')} "
                 f"errors {ended.get('errors')}")


ECHO = "def {name}(x):\n    return x\n"
NAP = "import time\n\ndef {name}(x, seconds=1.0):\n    time.sleep(seconds)\n    return x\n"


def deploy_echo(prefix: str = "echo_") -> str:
    name = unique(prefix)
    upload(name, ECHO.format(name=name).encode())
    return name


def deploy_nap(prefix: str = "nap_") -> str:
    name = unique(prefix)
    upload(name, NAP.format(name=name).encode())
    return name


# -- fault drills --------------------------------------------------------------------------------

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
            pids = [submit(member, spec(nap, [f"call-{i}"], {"seconds": 1.5},
                                        executortype=kind, maxexectime=3, maxretries=2))
                    for i in range(inflight)]
            first_id = member.get_executor(first.name)["executorid"]

            def all_running() -> bool:
                states = [get(member, p) for p in pids]
                return all(p["state"] == RUNNING and p["assignedexecutorid"] == first_id
                           for p in states)

            wait_until(f"{inflight} calls running on the first executor", all_running, 15)
            def calls_running() -> list[psutil.Process]:
                calls = first.running_calls()  # type: ignore[union-attr]
                return calls if len(calls) >= inflight else []

            running = len(wait_until(f"{inflight} sandbox children running calls",
                                     calls_running, 10))
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
                drill.expect(p["state"] == SUCCESS and p["out"] == [f"call-{i}"],
                             f"{pid[:12]}: state {p['state']} out {p.get('out')} "
                             f"errors {p.get('errors')}")
                drill.expect(p["assignedexecutorid"] == second_id,
                             f"{pid[:12]} not completed by the second executor")
                drill.expect(1 <= p["retries"] <= 2, f"{pid[:12]}: retries {p['retries']}")
            drill.facts.update(in_flight=inflight, sandbox_calls_running_at_kill=running,
                               completed_by_second=sum(
                                   ended[p]["assignedexecutorid"] == second_id for p in pids),
                               retries=sorted(ended[p]["retries"] for p in pids),
                               all_done_s_after_kill=round(done_after, 1))
            check_executor_health(drill, second)
        finally:
            if first is not None:
                first.stop()
                unregister(member, first.name)
            if second is not None:
                status = second.stop()
                drill.expect(status == 0, f"second executor exit status {status}")
    return drill


def drill_service_restart(member: ColoniesClient, services: Services, workdir: Path,
                          service: str, down_s: float = 2.0, load_s: float = 1.5,
                          rate: float = 8.0) -> Drill:
    """Restart ``service`` (colonies or postgres) while calls are submitted and served:
    the executor reconnects by itself, every call ends SUCCESS exactly once (no requeue),
    and closes that failed while it was down are delivered afterwards."""
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
                pids.append(submit(member, spec(nap, [i], {"seconds": 0.7}, executortype=kind,
                                                maxexectime=60), counters=counters))
            except Exception as exc:  # noqa: BLE001 - reported as a problem
                load_errors.append(repr(exc))
                return
            i += 1
            stop_load.wait(1 / rate)

    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind, concurrency=4)
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
            wrong = [pid[:12] for i, pid in enumerate(pids)
                     if ended[pid]["state"] != SUCCESS or ended[pid]["out"] != [i]]
            requeued = [pid[:12] for pid in pids if ended[pid]["retries"] != 0]
            drill.expect(not wrong, f"calls not SUCCESS with their own output: {wrong[:10]}")
            drill.expect(not requeued, f"calls requeued (a close was lost): {requeued[:10]}")
            ex.wait_for_log("colonies reachable again", 15, mark)
            tail = ex.log()[mark:]
            late = _late_deliveries(tail)
            drill.expect(late > 0, "no close was delivered late (none failed while down?)")
            # One line per state change. A stopping PostgreSQL flaps (requests that need no
            # new connection still succeed for a moment), hence a few pairs at most there.
            down, up = tail.count("colonies unreachable"), tail.count("colonies reachable again")
            most = 1 if service == "colonies" else 4
            drill.expect(1 <= down <= most and up == down,
                         f"{down} 'unreachable' and {up} 'reachable again' lines")
            drill.expect(tail.rfind("colonies reachable again") > tail.rfind("unreachable"),
                         "the last state change logged is not 'reachable again'")
            check_executor_health(drill, ex, mark)
            drill.facts.update(calls=len(pids), succeeded=states.count(SUCCESS),
                               lost=len(pids) - states.count(SUCCESS) - states.count(FAILED),
                               in_flight_at_stop=in_flight, down_s=round(down_for, 1),
                               submit_retries=counters.get("submit_retries", 0),
                               closes_delivered_late=late, requeued=len(requeued),
                               outage_log_lines=down)
            served_after(drill, member, nap, kind)
        finally:
            stop_load.set()
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
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
                drill.expect(not port_open("minio"), "MinIO was started again during the "
                             "drill (a `stack.sh up` elsewhere?)")
            drill.expect(during_cached["state"] == SUCCESS and during_cached["out"] == [cached],
                         f"cached call during the outage: {during_cached.get('errors')}")
            reason = (during_uncached.get("errors") or [""])[0]
            drill.expect(during_uncached["state"] == FAILED and reason.startswith(
                f"unavailable: cannot fetch function '{uncached}'"),
                f"uncached call during the outage: {during_uncached['state']} {reason!r}")
            after = call(uncached)
            drill.expect(after["state"] == SUCCESS and after["out"] == [uncached],
                         f"uncached call after the outage: {after.get('errors')}")
            check_executor_health(drill, ex, mark)
            drill.facts.update(cached_during="SUCCESS" if during_cached["state"] == SUCCESS
                               else "FAILED", uncached_during=reason[:90],
                               uncached_after="SUCCESS" if after["state"] == SUCCESS
                               else "FAILED")
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
            drill.expect(ended["state"] == FAILED and reason.startswith("crash: "),
                         f"killed call ended {ended['state']} {reason!r}")
            drill.expect(uid == NOBODY, f"the sandbox child ran as uid {uid}")
            served_after(drill, member, nap, kind)
            zombies = [p.pid for p in ex.sandbox_children()
                       if p.status() == psutil.STATUS_ZOMBIE]
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
    runs in a private mount namespace where a 64 KiB tmpfs (64 inodes) is both /dev/shm and
    /tmp; nothing changes for anyone else on the machine."""
    drill = Drill("full /tmp (sandbox temp dirs)")
    kind = unique("drill-tmp-")
    echo = deploy_echo()
    tiny = workdir / unique("tinytmp-")
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,nr_inodes=64,mode=1777", "tmpfs",
                    str(tiny)], check=True)
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /dev/shm && mount --bind "$0" /tmp && exec "$@"', str(tiny)]
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
            drill.expect(first["state"] == SUCCESS, f"call before filling: {first.get('errors')}")
            filled = _fill(tiny)
            # Work dirs are empty dirs: they need an inode, no blocks, and each finished call
            # frees one that the next fork reuses. So calls run several at once: the spare
            # takes one, the others need a new work dir and find no inode.
            started = time.monotonic()
            batch = [submit(member, spec(echo, [i], executortype=kind, maxexectime=10))
                     for i in range(2, 8)]
            ended = wait_ended(member, batch, 20)
            slowest = time.monotonic() - started
            during = [(ended[pid], 0.0) for pid in batch]
            failed = [(p, s) for p, s in during if p["state"] == FAILED]
            reasons = sorted({(p.get("errors") or [""])[0][:120] for p, _ in failed})
            drill.expect(all(p["state"] in (SUCCESS, FAILED) for p, _ in during),
                         "a call did not end while the temp fs was full")
            drill.expect(failed, "no call failed while the temp fs was full")
            drill.expect(all(r.startswith("crash: ") and "No space left" in r for r in reasons),
                         f"unclear reasons while full: {reasons}")
            drill.expect(slowest < 10, f"a call took {slowest:.1f}s while full (hang?)")
            drill.expect(ex.alive, "executor died while the temp fs was full")
            for path in tiny.iterdir():
                if path.is_file():
                    path.unlink()
            recovered_in = None
            started = time.monotonic()
            for i in range(10):
                after, _ = call(100 + i)
                if after["state"] == SUCCESS:
                    recovered_in = time.monotonic() - started
                    break
                time.sleep(0.5)
            drill.expect(recovered_in is not None, "no recovery after freeing space")
            check_executor_health(drill, ex, mark)
            drill.facts.update(filled_bytes=filled, calls_while_full=len(during),
                               failed_while_full=len(failed),
                               reason=reasons[0] if reasons else "",
                               recovered_s=None if recovered_in is None
                               else round(recovered_in, 1))
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
    "print_file": ("print('x', file=[])\n    return 1", "forbidden",
                   "print(file=...) is not available"),
    "import_sys": ("import sys\n    sys.stdout.close()\n    return 1", "forbidden", "sys"),
    "flush_end": ("print('a', end='', flush=True)\n    print('b', sep='', end='\\n')\n"
                  "    return 'ok'", "SUCCESS", "ok"),
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
            pids = {s: submit(member, spec(n, executortype=kind, maxexectime=5))
                    for s, n in names.items()}
            ended = wait_ended(member, list(pids.values()), 30)
            seen = {}
            for suffix, pid in pids.items():
                p = ended[pid]
                _, want, text = STDOUT_TRICKS[suffix]
                if p["state"] == SUCCESS:
                    got, detail = "SUCCESS", str(p["out"][0])
                elif p["state"] == FAILED:
                    reason = (p.get("errors") or [""])[0]
                    got, detail = reason.split(":", 1)[0], reason
                else:
                    got, detail = f"state {p['state']}", ""
                seen[suffix] = got
                if want == "*":
                    drill.expect(got == "SUCCESS" or p["state"] == FAILED,
                                 f"{suffix}: not ended ({got})")
                else:
                    drill.expect(got == want and text in detail,
                                 f"{suffix}: expected {want} with {text!r}, got {got}: "
                                 f"{detail[:150]!r}")
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
    from faas_sandbox import child, wire
    from faas_sandbox.guards import compile_source
    from faas_sandbox.policy import Limits

    source = "def chatty(n):\n    for i in range(n):\n        print('line', i)\n    return n\n"
    compiled = compile_source(source)
    request = {"sha": "x", "function": "chatty", "args": "[[3],{}]",
               "modules": [], "limits": {k: getattr(Limits(), k) for k in (
                   "wall_seconds", "cpu_seconds", "memory_mb", "max_result_bytes",
                   "max_stdout_bytes", "max_open_files", "max_processes", "file_size_bytes")}}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.close(read_fd)
            os.close(1)
            os.close(2)
            frame = child.execute(request, lambda sha: compiled.code, [b""])
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
    if os.waitstatus_to_exitcode(status) != 0 or len(data) < 4:
        return {"ok": False, "status": status, "bytes": len(data)}
    frame = json.loads(data[4:])
    ok = frame.get("ok") is True and frame.get("value") == 3 and \
        frame.get("stdout") == "line 0\nline 1\nline 2\n"
    return {"ok": ok, "frame": frame}


# -- bad input ---------------------------------------------------------------------------------

def _snapshot(paths: Sequence[Path]) -> set[str]:
    """Files owned by the sandbox uid directly in these dirs, and everything in the repo tree
    that is not a cache (what a sandbox child or a confused executor could have written)."""
    out = set()
    for directory in paths:
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == NOBODY:
                        out.add(entry.path)
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".venv", "__pycache__", ".git", ".dev",
                                                 ".pytest_cache", ".mypy_cache", ".ruff_cache")]
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_uid == NOBODY:
                    out.add(path)
    return out


BAD_SOURCES: dict[str, tuple[bytes, str, str]] = {
    # suffix: (file content, expected kind, text expected in the reason)
    "notpython": (b"this is not python at all, just prose.\n", "compile", ""),
    "binary": (bytes(range(256)) * 4, "not_found", "not UTF-8"),
    "nul": (b"def f():\n    return 1\n\x00\n", "compile", ""),
    "empty": (b"", "not_found", "empty"),
    "huge": (b"# padding\n" * (10 * 1024 * 1024 // 10), "not_found", "source limit"),
}


def bad_specs(kind: str, echo: str) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name: (spec, expected kind, text expected in the reason)."""
    big = json.dumps(["x" * (3 * 1024 * 1024)])
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "no kwargs": (raw_spec({}, executortype=kind), "spec", "kwargs.function is missing"),
        "kwargs not an object": (raw_spec(["a"], executortype=kind), "*", ""),
        "function not a string": (raw_spec({"function": 123}, executortype=kind), "spec",
                                  "invalid function name"),
        "path in name": (raw_spec({"function": "../x"}, executortype=kind), "spec",
                         "invalid function name"),
        "slash in name": (raw_spec({"function": "a/b"}, executortype=kind), "spec",
                          "invalid function name"),
        "args not JSON": (raw_spec({"function": echo, "args": "[1, 2"}, executortype=kind),
                          "spec", "kwargs.args is not valid JSON"),
        "args not an array": (raw_spec({"function": echo, "args": "{\"a\": 1}"},
                                       executortype=kind), "spec", "an array"),
        "kwargs not JSON object": (raw_spec({"function": echo, "kwargs": "[1]"},
                                            executortype=kind), "spec", "an object"),
        "NaN in args": (raw_spec({"function": echo, "args": "[NaN]"}, executortype=kind),
                        "spec", "NaN"),
        "deep args": (raw_spec({"function": echo, "args": deep}, executortype=kind), "*", ""),
        "unknown kwarg": (raw_spec({"function": echo, "x": "1"}, executortype=kind), "spec",
                          "unknown kwargs"),
        "wrong arity": (raw_spec({"function": echo, "args": "[1, 2, 3]"}, executortype=kind),
                        "runtime", "TypeError"),
        "bad keyword name": (raw_spec({"function": echo, "kwargs": "{\"a-b\": 1}"},
                                      executortype=kind), "spec", "not an identifier"),
        "huge args": (raw_spec({"function": echo, "args": big}, executortype=kind), "runtime",
                      "over the limit"),
        "lone surrogate in args": (raw_spec({"function": echo, "args": "[\"\\ud800\"]"},
                                            executortype=kind), "*", ""),
        "arg not a number": (raw_spec({"function": echo, "arg": "warm"}, executortype=kind),
                             "spec", "not a number"),
        "unknown funcname": (raw_spec({"function": echo}, funcname="run", executortype=kind),
                             "spec", "unknown funcname"),
        "env code not base64": (raw_spec({}, funcname=echo, executortype=kind,
                                         env={"code": "%%% not base64"}), "spec", "base64"),
        "missing function": (raw_spec({"function": unique("nothing_")}, executortype=kind),
                             "not_found", "no function"),
    }


def drill_bad_input(member: ColoniesClient, workdir: Path) -> Drill:
    """Malformed specs and unusable function files: each process fails with a clear reason
    of the expected kind, nothing crashes, nothing is written outside the sandbox's temp dir."""
    drill = Drill("bad input (specs, files)")
    kind = unique("drill-bad-")
    echo = deploy_echo()
    sources = {}
    for suffix, (data, _, _) in BAD_SOURCES.items():
        name = unique(f"{suffix}_")
        upload(name, data)
        sources[suffix] = name
    cwd = workdir / unique("cwd-")
    cwd.mkdir()
    watched = [Path("/tmp"), Path("/dev/shm"), Path.cwd(), cwd]
    before = _snapshot(watched)
    ex = None
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind, cwd=cwd)
            mark = len(ex.log())
            cases: dict[str, tuple[str, str, str]] = {}
            for label, (the_spec, want, text) in bad_specs(kind, echo).items():
                try:
                    cases[label] = (submit(member, the_spec), want, text)
                except ColoniesRefused as exc:
                    drill.details[label] = f"refused by the server at submit: {exc}"
            for suffix, name in sources.items():
                _, want, text = BAD_SOURCES[suffix]
                cases[f"file: {suffix}"] = (submit(member, spec(name, executortype=kind)),
                                            want, text)
            for label, raw in _invalid_utf8_payloads(kind, echo).items():
                try:
                    cases[label] = (str(submit_raw_payload(member, raw)["processid"]), "*", "")
                except ColoniesRefused as exc:
                    drill.details[label] = f"refused by the server at submit: {exc}"
            ended = wait_ended(member, [pid for pid, _, _ in cases.values()], 40)
            outcomes = {}
            for label, (pid, want, text) in cases.items():
                p = ended[pid]
                reason = (p.get("errors") or [""])[0]
                got = "SUCCESS" if p["state"] == SUCCESS else (
                    reason.split(":", 1)[0] if p["state"] == FAILED else f"state {p['state']}")
                outcomes[label] = got if got == "SUCCESS" else reason[:100]
                if want == "*":
                    drill.expect(p["state"] in (SUCCESS, FAILED) and got != "crash",
                                 f"{label}: {got} {reason[:200]!r}")
                else:
                    drill.expect(got == want and text in reason,
                                 f"{label}: expected {want} with {text!r}, got {got}: "
                                 f"{reason[:200]!r}")
                drill.expect(len(reason) <= 4000 and "Traceback" not in reason,
                             f"{label}: unclear reason {reason[:200]!r}")
            served_after(drill, member, echo, kind)
            check_executor_health(drill, ex, mark)
            drill.details.update(outcomes)
            kinds = Counter(v if v == "SUCCESS" else v.split(":", 1)[0]
                            for v in outcomes.values())
            drill.facts["cases"] = len(outcomes) + sum(
                1 for v in drill.details.values() if str(v).startswith("refused by"))
            drill.facts["ended as"] = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
            drill.facts["refused at submit"] = len(drill.details) - len(outcomes)
        finally:
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
    after = _snapshot(watched)
    drill.expect(after <= before, f"new files by the sandbox uid: {sorted(after - before)}")
    leftovers = sorted(os.listdir(cwd))
    drill.expect(not leftovers, f"files in the executor's cwd: {leftovers}")
    drill.facts["new files"] = len(after - before) + len(leftovers)
    return drill


def _invalid_utf8_payloads(kind: str, echo: str) -> dict[str, bytes]:
    """submitfuncspecmsg payloads with raw invalid UTF-8 inside JSON strings."""
    colony = os.environ["COLONIES_COLONY_NAME"]

    def payload(kwargs_json: bytes, args_json: bytes = b"[]") -> bytes:
        return (b'{"msgtype":"submitfuncspecmsg","spec":{"nodename":"execute",'
                b'"funcname":"execute","args":' + args_json + b',"kwargs":' + kwargs_json +
                b',"priority":0,"maxwaittime":-1,"maxexectime":10,"maxretries":0,'
                b'"label":"","env":{},"conditions":{"colonyname":"' + colony.encode() +
                b'","executortype":"' + kind.encode() + b'"}}}')

    fn = echo.encode()
    return {
        "invalid UTF-8 in kwargs.args": payload(
            b'{"function":"' + fn + b'","args":"[\\"\xff\xfe\\"]"}'),
        "invalid UTF-8 in kwargs key": payload(b'{"function":"' + fn + b'","\xc3\x28":"1"}'),
        "invalid UTF-8 in spec.args": payload(b'{"function":"' + fn + b'"}', b'["\xed\xa0\x80"]'),
        "invalid UTF-8 in function": payload(b'{"function":"ec\xffho"}'),
    }
