"""``faas-sandbox exec``: one JSON object on stdout; exit 0 ok, 1 failed, 2 usage error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from faas_sandbox.cli import cli

CONVERT = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def convert_py(tmp_path: Path) -> Path:
    path = tmp_path / "convert.py"
    path.write_text(CONVERT)
    return path


def run(*argv: str) -> Any:
    return CliRunner().invoke(cli, ["exec", *argv])


def test_success_prints_the_outcome_and_exits_0(convert_py: Path) -> None:
    result = run(str(convert_py), "--function", "convert", "--args", "[21]")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"ok", "value", "error", "stdout", "usage"}
    assert doc["ok"] is True and doc["value"] == 69.8 and doc["error"] is None
    assert set(doc["usage"]) == {"wall_s", "cpu_s", "max_rss_bytes"}


def test_kwargs_policy_and_maxexectime(tmp_path: Path) -> None:
    path = tmp_path / "f.py"
    path.write_text("def f(a, b=1):\n    print(a)\n    return a * b\n")
    result = run(
        str(path),
        "--function",
        "f",
        "--kwargs",
        '{"a": 3, "b": 4}',
        "--policy",
        str(POLICIES / "strict.toml"),
        "--maxexectime",
        "1.5",
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["value"], doc["stdout"]) == (12, "3\n")


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("def f():\n    return 1 / 0\n", "runtime"),
        ("def f(:\n", "compile"),
        ("import os\ndef f():\n    return 1\n", "forbidden"),
        ("def f():\n    while True:\n        pass\n", "timeout"),
    ],
)
def test_failed_call_prints_the_error_and_exits_1(tmp_path: Path, source: str, kind: str) -> None:
    path = tmp_path / "f.py"
    path.write_text(source)
    result = run(str(path), "--function", "f", "--maxexectime", "0.5")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["value"] is None and doc["error"]["kind"] == kind
    assert doc["error"]["message"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["/nonexistent/f.py", "--function", "f"], "/nonexistent/f.py: no such file"),
        (["{path}", "--function", "convert", "--args", "[21"], "--args: not valid JSON"),
        (
            ["{path}", "--function", "convert", "--args", '{"a": 1}'],
            "--args: expected a JSON array",
        ),
        (
            ["{path}", "--function", "convert", "--kwargs", "[1]"],
            "--kwargs: expected a JSON object",
        ),
        (
            ["{path}", "--function", "convert", "--policy", "/nonexistent.toml"],
            "no such policy file",
        ),
        (["{path}", "--function", "convert", "--maxexectime", "0"], "--maxexectime: must be"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    convert_py: Path, argv: list[str], fragment: str
) -> None:
    result = run(*[a.replace("{path}", str(convert_py)) for a in argv])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_invalid_policy_file_is_a_usage_error(convert_py: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[limits]\nwall_seconds = -1\n")
    result = run(str(convert_py), "--function", "convert", "--policy", str(bad))
    assert result.exit_code == 2 and "wall_seconds" in result.stderr


def test_real_entry_point_prints_exactly_one_json_line(convert_py: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "faas_sandbox",
            "exec",
            str(convert_py),
            "--function",
            "convert",
            "--args",
            "[21]",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["value"] == 69.8
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["{missing}", "--function", "f"], "missing.py: no such file"),
        (["{missing}"], "Missing option '--function'"),  # click's own errors: one line too
        (["{missing}", "--function", "f", "--maxexectime", "soon"], "'soon' is not a valid float"),
    ],
)
def test_real_entry_point_usage_errors_are_one_line(
    tmp_path: Path, argv: list[str], fragment: str
) -> None:
    missing = str(tmp_path / "missing.py")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "faas_sandbox",
            "exec",
            *[a.replace("{missing}", missing) for a in argv],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert fragment in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "Traceback" not in proc.stderr
