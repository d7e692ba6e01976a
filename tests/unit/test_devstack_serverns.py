"""scripts/devstack: when the Colonies server gets a network namespace, what the stack says
when it cannot have one, and how a namespaced service is started (no stack needed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from devstack import config, serverns, services
from devstack.procs import StackError

KEYS = {"COLONIES_DB_PASSWORD": "pw", "COLONIES_SERVER_ID": "id"}


def test_without_root_the_server_runs_in_the_root_namespace_and_up_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(config, "IS_ROOT", False)
    assert serverns.unavailable() == "not running as root"
    assert serverns.prepare() is None
    said = capsys.readouterr().out
    assert "NOT PRIVATE" in said and "not running as root" in said
    assert f":{config.ETCD_CLIENT_PORT}" in said and "every interface" in said


def test_a_namespace_that_cannot_be_made_falls_back_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: str, check: bool = True) -> None:
        raise StackError("ip netns add faasdev-50080: mount --make-shared /run/netns failed")

    monkeypatch.setattr(config, "IS_ROOT", True)
    monkeypatch.setattr(config, "NETNS", "faasdev-test")
    monkeypatch.setattr(serverns.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(serverns, "exists", lambda name: False)
    monkeypatch.setattr(serverns, "ip", refuse)
    assert serverns.prepare() is None
    assert "NOT PRIVATE" in capsys.readouterr().out


def test_off_turns_the_namespace_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "NETNS", None)
    monkeypatch.setattr(config, "IS_ROOT", True)
    assert serverns.unavailable() == "FAAS_SANDBOX_NETNS=off"
    assert serverns.wanted() is None


def test_a_namespaced_server_starts_through_ip_netns_exec_on_the_unix_socket() -> None:
    inside, outside = services.colonies(KEYS, "faasdev-test"), services.colonies(KEYS, None)
    argv, env = inside.launch()
    assert argv[:4] == ["ip", "netns", "exec", "faasdev-test"] and argv[4:] == list(inside.argv)
    assert env["COLONIES_DB_HOST"] == str(config.PGDATA)  # PostgreSQL's socket directory
    assert outside.launch() == (list(outside.argv), dict(outside.env))
    assert outside.env["COLONIES_DB_HOST"] == config.HOST
    # Where it runs is checked from /proc, not hashed: every checkout agrees on the config.
    assert inside.fingerprint() == outside.fingerprint()


def test_the_forward_listens_on_loopback_and_names_no_checkout() -> None:
    forward = services.forward("faasdev-test")
    listen = forward.argv[forward.argv.index("--listen") + 1]
    assert listen == f"127.0.0.1:{config.COLONIES_PORT}"
    assert not any(str(config.REPO) in arg for arg in forward.argv)
    assert forward.cmd_marker in " ".join(forward.argv) + " "


def test_the_default_namespace_is_not_one_the_continuum_drills_remove() -> None:
    assert not config.NETNS_NAME.startswith("faas-")  # devstack/netns.py removes faas-*
