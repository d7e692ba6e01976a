"""The OS layer after a full escape: ``faas-sandbox selftest`` in real sandbox children.

Every probe plays an attacker with the whole of Python and ctypes (see
faas_sandbox/engine/isolation/attacks.py) and must come back denied, with the selftest's
outside checks (listeners, file names) agreeing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from faas_sandbox import Policy, Sandbox
from faas_sandbox.engine.isolation import selftest
from faas_sandbox.errors import EngineError

from .conftest import FAST

ISSUE_PROBES = {
    "read_etc_passwd",
    "read_package_source",
    "read_parent_environ",
    "list_root",
    "create_file_tmp",
    "create_file_cwd",
    "socket_inet",
    "socket_unix",
    "connect_loopback",
    "see_other_processes",
    "signal_other_process",
    "ptrace_other_process",
    "clear_parent_death_signal",
    "set_dumpable",
    "raise_rlimit",
    "fork",
    "execve",
    "unshare_or_mount",
    "other_function_code_in_memory",
}
MEMORY_PROBE = "other_function_code_in_memory"
EVERY_LAYER = frozenset({"seccomp", "landlock", "net_namespace", "ipc_namespace"}) | (
    {"drop_privileges"} if os.geteuid() == 0 else set()
)


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return selftest.run(Policy(name="selftest-test", limits=FAST, require=EVERY_LAYER))


def test_every_layer_is_active_here(report: dict[str, Any]) -> None:
    layers = report["layers"]
    assert all(layers[name] for name in EVERY_LAYER), layers
    assert layers["landlock_abi"] >= 6  # filesystem, TCP and scopes


def test_selftest_covers_the_issue_probes(report: dict[str, Any]) -> None:
    names = [probe["name"] for probe in report["probes"]]
    assert set(names) >= ISSUE_PROBES and len(names) == len(set(names))
    assert all(probe["detail"] for probe in report["probes"])


def test_every_escape_probe_is_denied(report: dict[str, Any]) -> None:
    allowed = [(p["name"], p["detail"]) for p in report["probes"] if not p["denied"]]
    assert allowed == []


def test_another_functions_code_is_not_in_a_childs_memory(report: dict[str, Any]) -> None:
    probe = next(p for p in report["probes"] if p["name"] == MEMORY_PROBE)
    assert probe["denied"] and "marker not found in" in probe["detail"], probe["detail"]
    searched_mib = int(probe["detail"].split("marker not found in ")[1].split()[0])
    assert searched_mib >= 1  # the search covered real memory, not nothing


def test_a_missing_required_layer_refuses_to_start() -> None:
    policy = Policy(
        name="needs-seccomp", limits=FAST, seccomp=False, require=frozenset({"seccomp"})
    )
    with pytest.raises(EngineError, match=r"requires isolation layer.*seccomp"):
        Sandbox(policy).start()


def test_without_seccomp_landlock_and_namespaces_still_hold_files_and_network() -> None:
    """Defence in depth: turn the filter off and the filesystem and loopback stay shut."""
    out = selftest.run(Policy(name="no-filter", limits=FAST, seccomp=False))
    assert out["layers"]["seccomp"] is False and out["layers"]["landlock"] is True
    verdicts = {p["name"]: p for p in out["probes"]}
    for name in (
        "read_etc_passwd",
        "read_package_source",
        "read_parent_environ",
        "list_root",
        "create_file_tmp",
        "create_file_cwd",
        "connect_loopback",
    ):
        assert verdicts[name]["denied"], verdicts[name]
    assert not verdicts["socket_inet"]["denied"]  # only the filter stops socket()


def test_cli_prints_the_report_and_exits_by_it(tmp_path: Any) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[limits]\nwall_seconds = 2.0\ncpu_seconds = 1\nmemory_mb = 128\n")
    done = subprocess.run(
        [sys.executable, "-m", "faas_sandbox", "selftest", "--json", "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = json.loads(done.stdout)
    assert set(out) >= {"probes", "layers"}
    assert all(set(p) == {"name", "denied", "detail"} for p in out["probes"])
    assert done.returncode == (0 if all(p["denied"] for p in out["probes"]) else 1)
    assert {p["name"] for p in out["probes"]} >= ISSUE_PROBES


def test_executor_selftest_refuses_to_serve_without_a_required_layer(tmp_path: Any) -> None:
    """It stops before reading any setting or key: no Colonies server is needed to see it."""
    policy = tmp_path / "needs-seccomp.toml"
    policy.write_text('[sandbox]\nseccomp = false\nrequire = ["seccomp"]\n')
    done = subprocess.run(
        [sys.executable, "-m", "faas_sandbox", "executor", "--selftest", "--policy", str(policy)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "requires isolation layer(s) seccomp" in done.stderr
    assert "not serving" in done.stderr
