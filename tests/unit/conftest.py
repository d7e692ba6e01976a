"""Unit-test helpers. ``run_cli`` runs the ``faas-sandbox`` entry point in this process under
click's CliRunner isolation (its own stdin/stdout/stderr and environment): the same code path
as the console script (``faas_sandbox.cli.main``: exit codes, one-line usage errors) without
paying for a new interpreter per case."""

from __future__ import annotations

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
