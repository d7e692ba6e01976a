"""`faas-sandbox deploy` refusals that happen before any server is contacted."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from faas_sandbox.commands.deploy_cmd import deploy_command


@pytest.fixture
def run(tmp_path, monkeypatch):
    for name in ("COLONIES_SERVER_HOST", "COLONIES_SERVER_PORT", "COLONIES_COLONY_NAME"):
        monkeypatch.delenv(name, raising=False)

    def run(source: str, *args: str):
        path = tmp_path / "fns.py"
        path.write_text(source)
        return CliRunner().invoke(deploy_command, [str(path), *args])
    return run


def test_compile_errors_are_listed_with_line_numbers_and_nothing_is_uploaded(run):
    result = run("def ok():\n    return 1\n\n\ndef bad(:\n    pass\n")
    assert result.exit_code == 1
    assert "line 5" in result.output.lower()
    assert "does not compile in the sandbox; nothing deployed" in result.output


def test_restricted_constructs_are_refused_at_deploy_time(run):
    result = run("def peek(x):\n    return x.__class__\n")
    assert result.exit_code == 1
    assert "Line 2" in result.output and "__class__" in result.output


def test_a_named_function_must_be_a_top_level_def(run):
    result = run("def outer():\n    def inner():\n        return 1\n    return inner()\n",
                 "--function", "inner")
    assert result.exit_code == 1
    assert "no top-level function 'inner' (found: outer)" in result.output


def test_async_functions_are_refused(run):
    result = run("async def later():\n    return 1\n")
    assert result.exit_code == 1
    assert "AsyncFunctionDef statements are not allowed" in result.output


def test_a_file_without_functions_is_refused(run):
    result = run("X = 1\n")
    assert result.exit_code == 1
    assert "no top-level function to deploy" in result.output


def test_valid_code_then_needs_the_colonies_settings(run):
    result = run("def convert(celsius):\n    return (celsius * 9/5) + 32\n")
    assert result.exit_code == 2
    assert "missing environment variable(s): COLONIES_SERVER_HOST" in result.output
    assert "Traceback" not in result.output
