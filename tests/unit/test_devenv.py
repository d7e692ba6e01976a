"""The CLI finds the local dev stack's settings (.dev/stack.env) when the environment has none."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from faas_sandbox import devenv

STACK_ENV = """\
# Written by `scripts/stack.sh up`
export COLONIES_SERVER_HOST=127.0.0.1
export COLONIES_SERVER_PORT=50080
export COLONIES_COLONY_NAME=dev
export COLONIES_PRVKEY='abc def'
export AWS_S3_BUCKET=faas
export PATH=/evil
export LD_PRELOAD=/evil.so
"""


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "stack.env"
    path.write_text(STACK_ENV)
    path.chmod(0o600)
    return path


def test_fills_an_environment_without_colonies_variables(env_file: Path) -> None:
    environ = {devenv.OVERRIDE: str(env_file), "AWS_S3_BUCKET": "mine"}
    assert devenv.load_stack_env(environ) == env_file
    assert environ["COLONIES_SERVER_HOST"] == "127.0.0.1"
    assert environ["COLONIES_PRVKEY"] == "abc def"  # shell quoting understood
    assert environ["AWS_S3_BUCKET"] == "mine"  # what the environment has wins
    assert "PATH" not in environ and "LD_PRELOAD" not in environ  # only client settings


def test_any_colonies_variable_means_configured(env_file: Path) -> None:
    environ = {devenv.OVERRIDE: str(env_file), "COLONIES_SERVER_HOST": "colonies.example"}
    assert devenv.load_stack_env(environ) is None
    assert environ == {devenv.OVERRIDE: str(env_file), "COLONIES_SERVER_HOST": "colonies.example"}


def test_none_turns_the_lookup_off() -> None:
    environ = {devenv.OVERRIDE: "none"}
    assert devenv.load_stack_env(environ) is None
    assert environ == {devenv.OVERRIDE: "none"}


@pytest.mark.parametrize("mode", [0o620, 0o602])
def test_a_file_others_may_write_is_ignored(env_file: Path, mode: int) -> None:
    env_file.chmod(mode)
    environ = {devenv.OVERRIDE: str(env_file)}
    assert devenv.load_stack_env(environ) is None
    assert "COLONIES_SERVER_HOST" not in environ


def test_a_missing_file_loads_nothing(tmp_path: Path) -> None:
    environ = {devenv.OVERRIDE: str(tmp_path / "absent.env")}
    assert devenv.load_stack_env(environ) is None


def test_the_default_file_is_the_checkouts_dev_stack_env() -> None:
    checkout = Path(devenv.__file__).resolve().parents[1]
    assert devenv.checkout_env_file() == checkout / ".dev" / "stack.env"


def test_the_cli_uses_it(
    env_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`faas-sandbox status` with no COLONIES_* set reaches the server named in the file."""
    from faas_sandbox.cli import main

    text = STACK_ENV.replace("50080", "1").replace("'abc def'", "a" * 64)  # port 1: no server
    env_file.write_text(text)
    for key in list(os.environ):
        if key.startswith(("COLONIES_", "AWS_S3_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv(devenv.OVERRIDE, str(env_file))
    with pytest.raises(SystemExit) as exited:
        main(["status"])
    err = capsys.readouterr().err
    assert exited.value.code == 3, err  # unreachable, not "missing COLONIES_*" (exit 2)
    assert "127.0.0.1:1" in err
