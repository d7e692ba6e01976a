"""What the drills (drills.py, bad_input.py) and bench/soak.py share: clients for the real
local stack, submitting and waiting for calls, ``faas-sandbox executor`` subprocesses watched
with psutil, stack outages that take turns across sessions, and :class:`Drill` results.

Needs the stack's client variables in ``os.environ`` (``.dev/stack.env``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil
import requests

from faas_sandbox.colonies.client import (
    ColoniesClient,
    call_spec,
    key_id,
    new_prvkey,
    sign,
)
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable
from faas_sandbox.executor.denial import maybe_database_restart
from faas_sandbox.kinds import ProcessState

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534  # the sandbox children's uid (policy default)
LABEL = "/faas"


class Services(Protocol):
    """What a drill needs to break and repair the stack (conftest's Stack has it)."""

    def stop(self, service: str) -> None: ...
    def start(self, service: str) -> None: ...
    def up(self) -> None: ...


STATE_DIR = (
    Path(os.environ.get("FAAS_SANDBOX_HOME", "~/.cache/faas-sandbox")).expanduser() / "state"
)
_OFFSET = int(os.environ.get("FAAS_SANDBOX_PORT_OFFSET", "0") or "0")  # see devstack/config.py
PORTS = {"colonies": 50080 + _OFFSET, "postgres": 55432 + _OFFSET, "minio": 9000 + _OFFSET}


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
    return ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env.get("COLONIES_SERVER_TLS") == "true",
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )


def upload(name: str, data: bytes) -> None:
    """Put raw bytes at ColonyFS /faas/NAME the tutorial's way: pycolonies' own client and
    its ``upload_data``, as they are (what the executor must read is what pycolonies writes)."""
    from pycolonies import Colonies

    env = os.environ
    sdk = Colonies(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env.get("COLONIES_SERVER_TLS") == "true",
    )
    sdk.upload_data(
        env["COLONIES_COLONY_NAME"], env["COLONIES_PRVKEY"], filename=name, data=data, label=LABEL
    )


def spec(
    function: str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    executortype: str,
    maxexectime: int = 10,
    maxretries: int = 0,
) -> dict[str, Any]:
    return call_spec(
        function,
        args,
        kwargs,
        colony=os.environ["COLONIES_COLONY_NAME"],
        maxexectime=maxexectime,
        maxretries=maxretries,
        executortype=executortype,
    )


def raw_spec(
    kwargs: Any,
    *,
    executortype: str,
    funcname: str = "execute",
    args: Any = None,
    maxexectime: int = 10,
    env: Any = None,
) -> dict[str, Any]:
    """A spec built by hand (what a Go or raw-HTTP client could send), not by call_spec."""
    return {
        "nodename": "execute",
        "funcname": funcname,
        "args": args if args is not None else [],
        "kwargs": kwargs,
        "priority": 0,
        "maxwaittime": -1,
        "maxexectime": maxexectime,
        "maxretries": 0,
        "label": "",
        "env": env or {},
        "conditions": {
            "colonyname": os.environ["COLONIES_COLONY_NAME"],
            "executortype": executortype,
        },
    }


def submit(
    member: ColoniesClient,
    the_spec: dict[str, Any],
    retry_for: float = 60.0,
    counters: dict[str, int] | None = None,
    database_restarts: bool = False,
) -> str:
    """Submit; while the server is down (or its database), retry until ``retry_for`` passes.
    ``database_restarts``: also retry "Access denied, not a member", which Colonies v1.9.12
    answers while its PostgreSQL restarts (executor/denial.py says why)."""
    deadline = time.monotonic() + retry_for
    while True:
        try:
            return str(member.submit(the_spec)["processid"])
        except (ColoniesUnreachable, ColoniesRefused) as exc:
            if isinstance(exc, ColoniesRefused) and not (
                database_restarts and exc.status == 403 and maybe_database_restart(str(exc))
            ):
                raise
            if counters is not None:
                counters["submit_retries"] = counters.get("submit_retries", 0) + 1
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def submit_raw_payload(member: ColoniesClient, payload: bytes) -> dict[str, Any]:
    """POST a submitfuncspecmsg whose payload is these exact bytes (e.g. invalid UTF-8)."""
    text = base64.b64encode(payload).decode()
    body = json.dumps(
        {
            "payloadtype": "submitfuncspecmsg",
            "payload": text,
            "signature": sign(text, member.prvkey),
        }
    )
    reply = requests.post(member.transport.url, data=body, timeout=10)
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


def wait_ended(
    member: ColoniesClient, pids: Sequence[str], timeout: float, poll: float = 0.1
) -> dict[str, dict[str, Any]]:
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
            # FAILED without errors: the server has not written them yet (ColoniesClient.wait)
            bare = process.get("state") == ProcessState.FAILED and not process.get("errors")
            if (
                process.get("state")
                not in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)
                or bare
            ):
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

    def __init__(
        self,
        log_path: Path,
        executor_type: str,
        *flags: str,
        name: str | None = None,
        concurrency: int = 2,
        cwd: Path = REPO,
        wrap: Sequence[str] = (),
        ready_timeout: float = 60,
        operator_key: str | None = None,
    ) -> None:
        """Self-registered under ``name``; or, with ``operator_key``, the operator identity
        ``name`` (registered with :func:`register_operator`; never unregistered by itself)."""
        self.name = name or unique(f"{executor_type}-")
        self.type, self.log_path = executor_type, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        env = {**os.environ, "FAAS_SANDBOX_LOG_LEVEL": "INFO"}
        identity = "self"
        if operator_key is not None:
            env.update(COLONIES_PRVKEY=operator_key, COLONIES_EXECUTOR_NAME=self.name)
            identity = "operator"
        argv = [
            *wrap,
            sys.executable,
            "-m",
            "faas_sandbox",
            "executor",
            "--identity",
            identity,
            "--name",
            self.name,
            "--executor-type",
            executor_type,
            "--concurrency",
            str(concurrency),
            "--grace",
            "5",
            "--assign-timeout",
            "5",
            *flags,
        ]
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.known_children: dict[int, psutil.Process] = {}  # forker, sandbox children
        self.left_after_stop: list[int] = []
        self.wait_for_log("serving", ready_timeout)
        self.remember_children()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float, after: int = 0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"executor {self.name} exited {self.proc.returncode} "
                    f"waiting for {text!r}:\n{self.log()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"executor {self.name}: no {text!r} within {timeout}s:\n{self.log()[-3000:]}"
                )
            time.sleep(0.05)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def ps(self) -> psutil.Process:
        return psutil.Process(self.pid)

    def forker(self) -> psutil.Process | None:
        with contextlib.suppress(psutil.Error):
            for child in self.ps().children():
                if "faas_sandbox.engine.forker" in " ".join(child.cmdline()):
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
            for child in self.ps().children(recursive=True):
                self.known_children.setdefault(child.pid, child)

    def usage(self) -> tuple[int, int]:
        """(RSS bytes, open fds) of the executor parent."""
        proc = self.ps()
        return proc.memory_info().rss, proc.num_fds()

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait: the exit status. Children of its still alive 5 s later are
        recorded in ``left_after_stop`` (then killed, like anything left of its session)."""
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
            self.left_after_stop = self.leftovers(5)
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
            alive = [pid for pid, proc in self.known_children.items() if _alive(proc)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def _cleanup(self) -> None:
        """Kill what is left of it (never anything else: psutil checks each pid's identity)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for proc in self.known_children.values():
            if _alive(proc):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        self._log.close()


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
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


def register_operator(member: ColoniesClient, name: str, executor_type: str) -> str:
    """Add and approve executor ``name`` with a fresh key, as an operator would: the key."""
    prvkey = new_prvkey()
    colony_key = os.environ["COLONIES_COLONY_PRVKEY"]
    member.add_executor(name, key_id(prvkey), executor_type, colony_key)
    member.approve_executor(name, colony_key)
    member.with_key(prvkey).add_function(name, "execute")
    return prvkey


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


def served_after(
    drill: Drill,
    member: ColoniesClient,
    function: str,
    executortype: str,
    value: int = 7,
    timeout: float = 20,
) -> None:
    """The executor keeps serving: ``function(value)`` (returns its argument) succeeds."""
    pid = submit(member, spec(function, [value], executortype=executortype))
    ended = wait_ended(member, [pid], timeout)[pid]
    drill.expect(
        ended["state"] == ProcessState.SUCCESS and ended["out"] == [value],
        f"benign call after the drill: state {ended['state']} out {ended.get('out')} "
        f"errors {ended.get('errors')}",
    )


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
