"""`faas-sandbox deploy` refusals that happen before any server is contacted."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from faas_sandbox.cli.commands.deploy_cmd import deploy_command


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
    result = run(
        "def outer():\n    def inner():\n        return 1\n    return inner()\n",
        "--function",
        "inner",
    )
    assert result.exit_code == 1
    assert "no top-level function 'inner' (found: outer)" in result.output


def test_a_function_option_that_is_no_function_name_is_a_usage_error(run):
    result = run("def f():\n    return 1\n", "--function", "../f")
    assert result.exit_code == 2
    assert "--function: invalid function name '../f': expected an identifier" in result.output


def test_a_def_whose_name_cannot_be_a_function_name_is_refused_before_upload(run):
    long = "f" * 129
    result = run(f"def {long}():\n    return 1\n")
    assert result.exit_code == 1
    assert f"invalid function name '{long[:78]}" in result.output
    assert "Traceback" not in result.output


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


def test_imports_the_policy_does_not_allow_are_refused_with_line_numbers(run):
    result = run("import math\n\ndef f():\n    import os\n    return os.getcwd()\n")
    assert result.exit_code == 1
    assert "line 4: import of 'os' is not allowed for f by policy 'default'" in result.output
    assert "can never run under policy 'default'; nothing deployed" in result.output


def test_relative_and_submodule_imports_are_checked(run):
    assert "relative imports" in run("from . import x\n\ndef f():\n    return 1\n").output
    assert "'os.path'" in run("from os.path import join\n\ndef f():\n    return 1\n").output


def test_over_the_size_cap_is_refused_before_parsing(run, tmp_path):
    policy = tmp_path / "small.toml"
    policy.write_text("[limits]\nmax_source_bytes = 64\n")
    result = run("def f():\n    return 1\n" + "# padding\n" * 20, "--policy", str(policy))
    assert result.exit_code == 1
    assert "over every function's max_source_bytes (at most 64)" in result.output


def test_the_check_uses_no_engine() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from faas_sandbox.cli.sourcecheck import problems; "
        "from faas_sandbox.policy import Policy; "
        "assert problems(b'import os\\ndef f(): pass\\n', Policy(), 'f'); "
        "print(sorted(m for m in sys.modules if m.startswith(('RestrictedPython', "
        "'faas_sandbox.engine.modules', 'faas_sandbox.engine.guards'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
