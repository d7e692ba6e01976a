"""`call`, `functions`, `logs`, `status`, `http`: usage and connection faults, one line each."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from faas_sandbox.cli.commands.call_cmd import format_value, parse_arg

from .conftest import CliResult, invoke_cli

ROOT = Path(__file__).resolve().parents[2]
KEY = "a" * 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(port: int | None) -> dict[str, str | None]:
    """No COLONIES_*/AWS_S3_* from the outer environment; with a port, a client for it."""
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("COLONIES_", "AWS_S3_"))
    }
    if port is not None:
        env.update(
            COLONIES_SERVER_HOST="127.0.0.1",
            COLONIES_SERVER_PORT=str(port),
            COLONIES_COLONY_NAME="dev",
            COLONIES_PRVKEY=KEY,
        )
    return env


def run_cli(*args: str, port: int | None = None) -> CliResult:
    return invoke_cli(*args, env=env_for(port))


def assert_one_line(result: CliResult | subprocess.CompletedProcess[str], status: int) -> None:
    assert result.returncode == status, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_the_console_entry_point_gives_one_line_and_the_exit_status() -> None:
    """One real `python -m faas_sandbox` run: what the in-process cases below stand in for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLONIES_", "AWS_S3_"))}
    result = subprocess.run(
        [sys.executable, "-m", "faas_sandbox", "status"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert_one_line(result, 2)
    assert "COLONIES_" in result.stderr


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("21", 21),
        ("2.5", 2.5),
        ('"x"', "x"),
        ("[1,2]", [1, 2]),
        ('{"a":1}', {"a": 1}),
        ("hello", "hello"),
        ("true", True),
        ("", ""),
    ],
)
def test_args_are_json_when_they_parse_else_strings(text: str, value: object) -> None:
    assert parse_arg(text) == value


def test_output_values_print_strings_raw_and_the_rest_as_json() -> None:
    assert [format_value(v) for v in ["hi", 69.8, {"a": [1]}, None]] == [
        "hi",
        "69.8",
        '{"a": [1]}',
        "null",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("call", "convert", "1"),
        ("functions",),
        ("logs", "p" * 64),
        ("status",),
    ],
)
def test_unreachable_colonies_is_exit_3_in_one_line(args: tuple[str, ...]) -> None:
    result = run_cli(*args, port=free_port())
    assert_one_line(result, 3)
    assert "unreachable" in result.stderr


@pytest.mark.parametrize("args", [("call", "convert"), ("functions",), ("status",)])
def test_missing_settings_is_exit_2_in_one_line(args: tuple[str, ...]) -> None:
    result = run_cli(*args)
    assert_one_line(result, 2)
    assert "COLONIES_" in result.stderr


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("call", "f", "--kwargs", "{nope"), "--kwargs: not valid JSON"),
        (("call", "f", "--kwargs", "[1]"), "--kwargs: expected a JSON object"),
        (("call", "f", "--kwargs", '{"\u00fcn": 1}'), "keyword argument name '\u00fcn' is not"),
        (("call", "../etc", "1"), "invalid function name"),
        (("call", "f", "--policy", "/nonexistent.toml"), "no such policy file"),
        (("http", "--policy", "/nonexistent.toml"), "no such policy file"),
        (("http", "--host", "0.0.0.0"), "not a loopback address"),
        (("call", "f", "--maxexectime", "0.0005"), "--maxexectime"),
        (("exec", "README.md", "--function", "f", "--maxexectime", "0.0005"), "--maxexectime"),
        (("result", "nope"), "expected 64 hex digits"),
        (("token", "add", "x", "--functions", "a/b", "--tokens", "/tmp/t.json"), "--functions"),
    ],
)
def test_bad_usage_is_exit_2_in_one_line(args: tuple[str, ...], text: str) -> None:
    result = run_cli(*args, port=free_port())
    assert_one_line(result, 2)
    assert text in result.stderr


def test_no_arguments_prints_the_help_and_exits_0() -> None:
    result = run_cli()
    assert result.returncode == 0, result.stderr
    assert "Usage: faas-sandbox" in result.stdout and "Commands:" in result.stdout
    assert result.stderr == ""


def test_http_cannot_listen_is_exit_1_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("http", "--port", str(port), port=free_port())
    assert_one_line(result, 1)
    assert "cannot listen" in result.stderr


def test_token_add_prints_the_token_alone_then_list_and_rm(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.json")
    added = run_cli("token", "add", "ci", "--functions", "convert,stats*", "--tokens", path)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert added.stdout == token + "\n" and token.startswith("fst_")
    listed = run_cli("token", "list", "--tokens", path)
    assert listed.stdout.startswith("ci\tconvert,stats*\t") and token not in listed.stdout
    assert run_cli("token", "rm", "ci", "--tokens", path).returncode == 0
    assert run_cli("token", "list", "--tokens", path).stdout == ""
    assert_one_line(run_cli("token", "rm", "ci", "--tokens", path), 2)


@pytest.mark.parametrize("name", ["call", "functions", "http", "logs", "status", "result", "token"])
def test_each_command_is_registered_and_has_help(name: str) -> None:
    result = run_cli(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"Usage: faas-sandbox {name}" in result.stdout
