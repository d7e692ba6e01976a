"""What a child looks like from inside, proven with trusted probes (probes.PROBES), and how
real deaths are classified. Probes run in place of user code in a fully isolated child."""

from __future__ import annotations

import os
from typing import Any

import pytest

from faas_sandbox import ErrorKind, Limits, Policy, Sandbox

from .conftest import FAST

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs root")


def _probe(sb: Sandbox, name: str, limits: Limits | None = None) -> Any:
    out = sb._probe(name, limits)
    assert out.ok, out
    return out.value


@root_only
def test_child_runs_as_nobody_with_nothing_inherited(engine: Sandbox) -> None:
    me = _probe(engine, "identity")
    assert me["uid"] == [65534, 65534, 65534] and me["gid"] == [65534, 65534, 65534]
    assert me["groups"] == []
    assert me["env"] == {}
    assert me["status"]["CapEff"] == me["status"]["CapPrm"] == "0000000000000000"
    # own session and process group; parent is the forker
    assert me["pid"] == me["pgid"] == me["sid"]
    assert me["ppid"] == engine.features["forker_pid"]
    # an empty, root-owned, read-only cwd
    assert me["cwd_entries"] == [] and me["cwd_mode"] == "0o555" and me["cwd_owner"] == 0
    assert me["dumpable"] == 0
    assert me["comm"] == "faas-call"


def test_child_keeps_only_its_pipes_and_dev_null(engine: Sandbox) -> None:
    me = _probe(engine, "identity")
    # 0-2 on /dev/null and the result pipe; the request pipe is closed once read
    assert me["open_fds"][:3] == [0, 1, 2] and len(me["open_fds"]) == 3 + 1
    assert me["result_fd"] in me["open_fds"]


def test_child_has_no_new_privs_and_a_seccomp_filter(engine: Sandbox) -> None:
    assert engine.features["seccomp"] is True, engine.features
    me = _probe(engine, "identity")
    assert me["status"]["NoNewPrivs"] == "1"
    assert me["status"]["Seccomp"] == "2" and me["status"]["Seccomp_filters"] == "1"


def test_child_rlimits_follow_the_call(engine: Sandbox) -> None:
    limits = Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=64, max_open_files=8,
                    max_processes=0, file_size_bytes=0)
    rl = _probe(engine, "identity", limits)["rlimits"]
    assert rl["RLIMIT_CPU"] == [1, 2]  # soft n, hard n+1: SIGXCPU comes first
    assert rl["RLIMIT_NOFILE"] == [8, 8] and rl["RLIMIT_NPROC"] == [0, 0]
    assert rl["RLIMIT_FSIZE"] == [0, 0] and rl["RLIMIT_CORE"] == [0, 0]
    soft, hard = rl["RLIMIT_AS"]
    assert soft == hard and 64 << 20 < soft < (64 << 20) + (512 << 20)


def test_seccomp_denies_process_network_and_signal_syscalls(engine: Sandbox) -> None:
    tried = _probe(engine, "syscalls")
    denied = "Operation not permitted"
    for name in ("fork", "execv", "socket", "socket_unix", "kill_forker", "prlimit_other",
                 "setuid_root"):
        assert tried[name] == denied, (name, tried[name])
    assert tried["raise_nofile"].startswith("ValueError")  # hard limit already lowered
    if os.geteuid() == 0:
        assert tried["write_cwd"] == "Permission denied"


@root_only
def test_forker_environment_never_saw_the_callers_secrets(
        make_sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert (out.error_kind, out.message) == (ErrorKind.CRASH,
                                             f"exited with code {code} without a result")


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
    assert out.message == ("killed by SIGKILL not sent by the sandbox "
                           "(likely the kernel OOM killer)")


def test_policy_can_turn_seccomp_off(make_sandbox: Any) -> None:
    sb = make_sandbox(Policy(limits=FAST, seccomp=False))
    assert _probe(sb, "identity")["status"]["Seccomp"] == "0"
    assert _probe(sb, "identity")["status"]["NoNewPrivs"] == "1"  # still set without it
