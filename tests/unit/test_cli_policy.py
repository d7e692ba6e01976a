from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import CliResult, invoke_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _in_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the shipped policies are named relative to the checkout


def run_cli(*args: str) -> CliResult:
    return invoke_cli(*args)


def test_policy_check_accepts_shipped_policy() -> None:
    result = run_cli("policy", "check", "policies/strict.toml")
    assert result.returncode == 0
    assert "ok (policy 'strict'" in result.stdout


def test_policy_check_rejects_bad_key_with_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nwall = 3\n")
    result = run_cli("policy", "check", str(bad))
    assert result.returncode == 1  # the check failed (README's exit codes)
    assert result.stderr.count("\n") == 1
    assert f"{bad}: limits.wall: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_policy_show_function_applies_override() -> None:
    result = run_cli("policy", "show", "policies/default.toml", "--function", "convert")
    assert result.returncode == 0
    shown = json.loads(result.stdout)
    assert shown["function"] == "convert"
    assert shown["limits"]["wall_seconds"] == 5.0
    assert shown["limits"]["memory_mb"] == 128
