"""Shared parts of the end-to-end benchmark (bench/bench_e2e.py) and its two reference executors.

- :func:`load_stack_env`: the COLONIES_* / AWS_S3_* variables of ``.dev/stack.env`` (written by
  ``scripts/stack.sh up``) for whatever the caller's environment does not already set.
- :func:`tutorial_spec`: the FaaS tutorial's process spec (funcname ``execute``, kwargs
  ``{function: convert, arg: "21"}`` -> ``[69.8]``) with maxexectime/maxretries set explicitly
  (protocol §6.4: the pycolonies FuncSpec default maxexectime=0 fails every call after ~1 s).
- :func:`register_executor`: add + approve an executor with the colony key and register the
  function ``execute`` (as the tutorial does; the server then also updates function statistics
  on every close, so every executor in the benchmark gives the server the same work per call).
- :class:`CpuMeter`: CPU seconds of the stack's processes (Colonies server, PostgreSQL with its
  backends, MinIO; found by their listening ports), of an executor (its own process apart from
  its descendants: our forker and sandbox children) and of this process, between two snapshots.
- :class:`ExecutorProc` (one executor subprocess, output to a log file), :class:`RssPeak`,
  :func:`cleanup` (remove a run's processes from the shared dev database afterwards).
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
STACK_ENV = REPO / ".dev" / "stack.env"
FUNCTION, ARG, EXPECTED = "convert", "21", [69.8]  # the tutorial's call and its answer
READY = "BENCH-EXECUTOR-READY"  # the line the reference executors print once registered


def load_stack_env(path: Path = STACK_ENV) -> dict[str, str]:
    """Set the ``export NAME=value`` lines of ``path`` that are not in os.environ yet."""
    if not path.exists():
        raise SystemExit(f"bench: {path} does not exist: run `scripts/stack.sh up` first")
    added = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line.startswith("export ") or "=" not in line:
            continue
        name, value = line[len("export ") :].split("=", 1)
        value = value.strip().strip("'\"")
        if name not in os.environ:
            os.environ[name] = value
            added[name] = value
    return added


def tutorial_spec(
    colony: str, executortype: str, maxexectime: int, maxretries: int
) -> dict[str, Any]:
    """The tutorial's spec for one call, as our submit helper builds it (limits explicit)."""
    from faas_sandbox.colonies.client import call_spec

    spec = call_spec(
        FUNCTION,
        colony=colony,
        executortype=executortype,
        maxexectime=maxexectime,
        maxretries=maxretries,
    )
    spec["kwargs"] = {"function": FUNCTION, "arg": ARG}  # the tutorial's form, not kwargs.args
    return spec


def register_executor(client: Any, colony_prvkey: str, name: str, executortype: str) -> str:
    """Register ``name`` of ``executortype`` with a fresh key (fast client); returns the key."""
    from faas_sandbox.colonies.client import key_id, new_prvkey

    prvkey = new_prvkey()
    client.add_executor(name, key_id(prvkey), executortype, colony_prvkey)
    client.approve_executor(name, colony_prvkey)
    client.with_key(prvkey).add_function(name, "execute")
    return prvkey


def pct(values: Sequence[float], p: float) -> float:
    """The p-th percentile (inclusive method); nan for no values."""
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(p * 10) - 1]


# -- CPU accounting ------------------------------------------------------------------------------

_OFFSET = int(os.environ.get("FAAS_SANDBOX_PORT_OFFSET", "0") or "0")  # a second stack's ports
STACK_PORTS = {"colonies": 50080 + _OFFSET, "postgres": 55432 + _OFFSET, "minio": 9000 + _OFFSET}


def stack_pids() -> dict[str, int]:
    """Pids of the processes listening on the stack's ports (whoever started them).

    When the Colonies server runs in a network namespace of its own (scripts/stack.sh as
    root), what listens on its port here is the stack's forward: that counts as ``forward``
    and the server itself, found by its command line (``colonies server ... --port 50080``),
    as ``colonies``, so neither ends up in ``other``."""
    pids: dict[str, int] = {}
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status != psutil.CONN_LISTEN or conn.pid is None or not conn.laddr:
            continue
        for name, port in STACK_PORTS.items():
            if conn.laddr.port == port:
                pids.setdefault(name, conn.pid)
    listener = pids.get("colonies")
    if listener is not None and not _colonies_server(_cmdline(listener)):
        pids["forward"] = pids.pop("colonies")
        port = str(STACK_PORTS["colonies"])
        for proc in psutil.process_iter(["cmdline"]):
            cmd = proc.info.get("cmdline") or []
            if _colonies_server(cmd) and port in _after(cmd, "--port"):
                pids["colonies"] = proc.pid
                break
    return pids


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _colonies_server(cmd: list[str]) -> bool:
    return bool(cmd) and os.path.basename(cmd[0]) == "colonies" and "server" in cmd[1:3]


def _after(cmd: list[str], flag: str) -> list[str]:
    return [cmd[i + 1] for i, arg in enumerate(cmd[:-1]) if arg == flag]


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants, plus the children they have reaped."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of ``pid``, summed RSS of its live descendants) in bytes."""
    try:
        root = psutil.Process(pid)
        own = root.memory_info().rss
        kids = 0
        for proc in root.children(recursive=True):
            try:
                kids += proc.memory_info().rss
            except psutil.Error:
                pass
        return own, kids
    except psutil.Error:
        return 0, 0


@dataclass
class CpuSample:
    at: float
    parts: dict[str, float]
    busy: float  # machine-wide busy CPU seconds (all cores)


@dataclass
class CpuMeter:
    """Snapshots CPU seconds of named process trees; :meth:`delta` between two snapshots."""

    trees: dict[str, int] = field(default_factory=dict)  # label -> root pid

    split: dict[str, int] = field(default_factory=dict)  # label -> pid: parent and children apart

    def sample(self) -> CpuSample:
        parts = {label: tree_cpu(pid) for label, pid in self.trees.items()}
        for label, pid in self.split.items():
            total = tree_cpu(pid)
            try:
                t = psutil.Process(pid).cpu_times()
                own = t.user + t.system
            except psutil.Error:
                own = 0.0
            parts[f"{label}-parent"] = own
            parts[f"{label}-children"] = max(0.0, total - own)
        me = psutil.Process().cpu_times()
        parts["loadgen"] = me.user + me.system
        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + getattr(t, "steal", 0.0)
        return CpuSample(time.monotonic(), parts, busy)

    @staticmethod
    def delta(a: CpuSample, b: CpuSample) -> dict[str, float]:
        """CPU seconds used per label between ``a`` and ``b``, plus ``other`` and ``wall``."""
        out = {k: max(0.0, b.parts.get(k, 0.0) - v) for k, v in a.parts.items()}
        busy = max(0.0, b.busy - a.busy)
        out["other"] = max(0.0, busy - sum(out.values()))
        out["busy"] = busy
        out["wall"] = b.at - a.at
        return out


def format_cpu(d: Mapping[str, float], calls: int) -> str:
    """``label: 45% core (1.2 ms/call)`` for each label of a CpuMeter delta."""
    wall = d.get("wall", 0.0) or 1e-9
    cores = psutil.cpu_count() or 1
    items = [
        f"{k} {100 * v / wall:.0f}% ({1000 * v / max(calls, 1):.2f} ms/call)"
        for k, v in d.items()
        if k not in ("wall", "busy")
    ]
    items.append(f"machine busy {100 * d.get('busy', 0.0) / wall / cores:.0f}% of {cores} cores")
    return "; ".join(items)


# -- executor processes -------------------------------------------------------------------


class ExecutorProc:
    """One executor subprocess writing its output straight into a log file.

    The file is the subprocess's stdout/stderr, so no thread of this process (the load
    generator, whose CPU the report counts) reads or copies the executor's log lines: an
    executor that logs every call pays for its writes itself, and one that logs nothing does
    not make the load generator look cheaper. Ready = its marker shows in the file."""

    def __init__(self, argv: list[str], marker: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=dict(os.environ)
        )
        self._marker = marker.encode()

    def _ready(self) -> bool:
        with open(self.log_path, "rb") as log:
            return self._marker in log.read(4 << 20)  # the marker is in the first lines

    def wait_ready(self, timeout: float, registered: Any = None) -> None:
        """Until the ready line shows, or ``registered()`` says the server has it approved."""
        end = time.monotonic() + timeout
        while not self._ready():
            if registered is not None and registered():
                time.sleep(0.5)  # registered just before its workers start their long-polls
                return
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"bench: executor did not start (see {self.log_path})")
            time.sleep(0.2)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def registered(member: Any, name: str) -> Any:
    """A probe: is executor ``name`` registered and approved? (log-level independent)."""
    from faas_sandbox.kinds import ExecutorState

    def probe() -> bool:
        try:
            return bool(member.get_executor(name).get("state") == ExecutorState.APPROVED)
        except Exception:  # noqa: BLE001 - not there yet
            return False

    return probe


class RssPeak:
    """The largest RSS of one process (not its descendants), sampled every 0.25 s until stop().

    Only that process is read: finding its descendants scans every process on the machine
    (~3 ms of this process's CPU, which the report counts as the load generator's, per sample)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            proc = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.wait(0.25):
            try:
                self.peak = max(self.peak, proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(1)
        return self.peak


def cleanup(member: Any, pids: list[str], threads: int) -> None:
    """Remove this run's processes from the shared dev database (not timed)."""
    started = time.monotonic()
    chunks = [pids[i::threads] for i in range(threads)]
    failed = [0]

    def remove(chunk: list[str]) -> None:
        for pid in chunk:
            try:
                member.rpc("removeprocessmsg", processid=pid, all=False)
            except Exception:  # noqa: BLE001 - a RUNNING leftover; reported as a count
                failed[0] += 1

    workers = [threading.Thread(target=remove, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    print(
        f"removed {len(pids) - failed[0]} benchmark processes in "
        f"{time.monotonic() - started:.1f}s" + (f" ({failed[0]} refused)" if failed[0] else "")
    )
