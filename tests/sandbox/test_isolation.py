"""What a child looks like from inside, proven with trusted probes (probes.PROBES), and how
real deaths are classified. Probes run in place of user code in a fully isolated child.

A locked-down child can open nothing, /proc included, so what only /proc shows (seccomp
mode, capabilities, cwd, name, dumpable) is read from outside while a probe sleeps in it."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pyseccomp
import pytest

from faas_sandbox import ErrorKind, Limits, Policy, Sandbox
from tests.sandbox.waiting import wait_for

from .conftest import FAST

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")


def _probe(sb: Sandbox, name: str, limits: Limits | None = None) -> Any:
    out = sb._probe(name, limits)
    assert out.ok, out
    return out.value


_NANOSLEEP = str(pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "clock_nanosleep"))


def _sleeping_in(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] == _NANOSLEEP
    except (OSError, IndexError):
        return False


def _outside(sb: Sandbox) -> dict[str, Any]:
    """/proc facts of a child that is running a call (the ``sleep`` probe: it is past its
    lockdown once it sleeps), read from outside (root: the child is not dumpable)."""
    done: list[Any] = []
    hold = Limits(wall_seconds=60.0, cpu_seconds=1, memory_mb=128)  # killed below, not timed out
    worker = threading.Thread(target=lambda: done.append(sb._probe("sleep", hold)))
    worker.start()
    try:
        pid = wait_for(lambda: sb._stats()["running"])[0]
        wait_for(lambda: _sleeping_in(pid))
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                status[key] = value.strip()
        cwd = os.readlink(f"/proc/{pid}/cwd")
        cwd_stat = os.stat(cwd)
        facts = {
            "pid": pid,
            "status": status,
            "cwd_entries": os.listdir(cwd),
            "cwd_mode": oct(cwd_stat.st_mode & 0o7777),
            "cwd_owner": cwd_stat.st_uid,
            "proc_owner": os.stat(f"/proc/{pid}/environ").st_uid,  # root: not dumpable
        }
        with open(f"/proc/{pid}/comm") as f:
            facts["comm"] = f.read().strip()
        os.kill(pid, signal.SIGKILL)
    finally:
        worker.join(timeout=15)
    assert done and not done[0].ok  # killed above
    return facts


@root_only
def test_child_runs_as_nobody_with_nothing_inherited(engine: Sandbox) -> None:
    me = _probe(engine, "identity")
    assert me["uid"] == [65534, 65534, 65534] and me["gid"] == [65534, 65534, 65534]
    assert me["groups"] == []
    assert me["env"] == {}
    # own session and process group
    assert me["pid"] == me["pgid"] == me["sid"]
    out = _outside(engine)
    assert out["status"]["CapEff"] == out["status"]["CapPrm"] == "0000000000000000"
    assert out["status"]["PPid"] == str(engine.features["forker_pid"])
    assert out["status"]["Uid"].split() == ["65534"] * 4
    # an empty, root-owned, read-only cwd
    assert out["cwd_entries"] == [] and out["cwd_mode"] == "0o555" and out["cwd_owner"] == 0
    assert out["proc_owner"] == 0  # not dumpable
    assert out["comm"] == "faas-call"


def test_child_keeps_only_its_pipes_and_dev_null(engine: Sandbox) -> None:
    me = _probe(engine, "identity")
    # 0-2 on /dev/null and the result pipe; the request pipe is closed once read
    assert me["open_fds"][:3] == [0, 1, 2] and len(me["open_fds"]) == 3 + 1
    assert me["result_fd"] in me["open_fds"]


@root_only
def test_child_has_no_new_privs_and_a_seccomp_filter(engine: Sandbox) -> None:
    assert engine.features["seccomp"] is True, engine.features
    status = _outside(engine)["status"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2" and status["Seccomp_filters"] == "1"


def test_child_rlimits_follow_the_call(engine: Sandbox) -> None:
    limits = Limits(
        wall_seconds=2.0,
        cpu_seconds=1,
        memory_mb=64,
        max_open_files=8,
        max_processes=0,
        file_size_bytes=0,
    )
    rl = _probe(engine, "identity", limits)["rlimits"]
    assert rl["RLIMIT_CPU"] == [1, 1]  # soft == hard: the kernel's SIGKILL at n is `cpu`
    assert rl["RLIMIT_NOFILE"] == [8, 8] and rl["RLIMIT_NPROC"] == [0, 0]
    assert rl["RLIMIT_FSIZE"] == [0, 0] and rl["RLIMIT_CORE"] == [0, 0]
    soft, hard = rl["RLIMIT_AS"]
    assert soft == hard and 64 << 20 < soft < (64 << 20) + (512 << 20)


def test_seccomp_denies_process_network_and_signal_syscalls(engine: Sandbox) -> None:
    tried = _probe(engine, "syscalls")
    denied = "Operation not permitted"
    for name in (
        "fork",
        "execv",
        "socket",
        "socket_unix",
        "kill_forker",
        "prlimit_other",
        "setuid_root",
        "write_cwd",
    ):
        assert tried[name] == denied, (name, tried[name])
    assert tried["raise_nofile"].startswith("ValueError")  # hard limit already lowered


def test_a_locked_down_child_can_lower_its_limits_but_never_raise_them(engine: Sandbox) -> None:
    """The filter lets prlimit64 write on the child itself (pid 0); what keeps the limits
    from rising is the kernel: no CAP_SYS_RESOURCE, every limit soft == hard."""
    assert engine.features["seccomp"] is True, engine.features
    limits = Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=64, max_open_files=8)
    got = _probe(engine, "rlimit_rules", limits)
    assert got["start"] == [8, 8]
    assert got["lower"] == "allowed"  # a write passes the filter ...
    # ... so this EPERM is the kernel's (Python maps it to ValueError), not the filter's
    assert got["raise_hard"] == "ValueError: not allowed to raise maximum limit"
    assert got["soft_above_hard"] == "ValueError: current limit exceeds maximum limit"
    assert got["by_own_pid"] == "Operation not permitted"  # the filter: pid 0 only
    assert got["end"] == [7, 7]


@root_only
def test_forker_environment_never_saw_the_callers_secrets(
    make_sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLONIES_PRVKEY", "secret-key-material")
    sb = make_sandbox()
    with open(f"/proc/{sb._forker_pid}/environ", "rb") as f:
        env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if item)
    assert set(env) == {b"PATH", b"LANG"}
    assert _probe(sb, "identity")["env"] == {}


def test_usage_reports_peak_rss_of_the_child(engine: Sandbox) -> None:
    out = engine._probe("rss")
    assert out.ok and out.value == 48 << 20
    assert out.usage.max_rss_bytes >= 48 << 20 and out.usage.cpu_s > 0


# -- real deaths, classified --------------------------------------------------------------


def test_segfault_is_a_crash_named_by_signal(engine: Sandbox) -> None:
    out = engine._probe("segv")
    assert (out.error_kind, out.message) == (ErrorKind.CRASH, "killed by signal SIGSEGV")


@pytest.mark.parametrize("probe", ["exit3", "exit0"])
def test_exit_without_a_result_is_a_crash(engine: Sandbox, probe: str) -> None:
    out = engine._probe(probe)
    code = probe[-1]
    assert (out.error_kind, out.message) == (
        ErrorKind.CRASH,
        f"exited with code {code} without a result",
    )


def test_malformed_result_is_a_crash(engine: Sandbox) -> None:
    out = engine._probe("garbage")
    assert out.error_kind is ErrorKind.CRASH and "malformed result" in out.message


def test_raw_flood_on_the_result_pipe_is_killed_as_output(engine: Sandbox) -> None:
    out = engine._probe("flood")
    assert out.error_kind is ErrorKind.OUTPUT
    assert out.message == "the child sent more bytes than its result and stdout caps allow"


def test_sigkill_we_did_not_send_is_reported_as_likely_oom(make_sandbox: Any) -> None:
    sb = make_sandbox(seccomp=False)  # the probe kills itself, which seccomp would deny
    assert sb.features["seccomp"] is False
    out = sb._probe("selfkill")
    assert out.error_kind is ErrorKind.CRASH
    assert out.message == (
        "killed by SIGKILL not sent by the sandbox (likely the kernel OOM killer)"
    )


@root_only
def test_policy_can_turn_seccomp_off(make_sandbox: Any) -> None:
    sb = make_sandbox(Policy(limits=FAST, seccomp=False))
    status = _outside(sb)["status"]
    assert status["Seccomp"] == "0"
    assert status["NoNewPrivs"] == "1"  # still set without it
