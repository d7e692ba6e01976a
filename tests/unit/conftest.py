"""Unit-test helpers. ``run_cli`` runs the ``faas-sandbox`` entry point in this process under
click's CliRunner isolation (its own stdin/stdout/stderr and environment): the same code path
as the console script (``faas_sandbox.cli.main``: exit codes, one-line usage errors) without
paying for a new interpreter per case."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from click.testing import CliRunner


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def invoke_cli(*args: str, env: Mapping[str, str | None] | None = None) -> CliResult:
    """``faas-sandbox ARGS``; ``env`` entries override os.environ, None removes a variable."""
    from faas_sandbox.cli import main

    with CliRunner().isolation(env=env) as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    return invoke_cli


@pytest.fixture(autouse=True)
def _no_stack_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests see no COLONIES_*/AWS_S3_* settings: the integration tests' session fixture
    exports the stack's (keys included) for the rest of the run, and tests/integration is
    collected before tests/unit."""
    for key in list(os.environ):
        if key.startswith(("COLONIES_", "AWS_S3_")):
            monkeypatch.delenv(key)
