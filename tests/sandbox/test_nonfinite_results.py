"""Non-finite results (NaN, Infinity) fail the call with kind ``output``, as docs/protocol.md
says: JSON, the format of the HTTP API and of Colonies' ``out``, has no such numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faas_sandbox.cli import cli

pytestmark = pytest.mark.fork


@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
@pytest.mark.parametrize("shape", ["{x}", "[1, {x}]", "{{'a': {x}}}"])
def test_non_finite_results_fail_as_output(tmp_path: Path, value: str, shape: str) -> None:
    path = tmp_path / "f.py"
    path.write_text(f"def f():\n    x = float('{value}')\n    return {shape.format(x='x')}\n")
    result = CliRunner().invoke(cli, ["exec", str(path), "--function", "f"])
    outcome = json.loads(result.output)
    assert result.exit_code == 1
    assert outcome["error"]["kind"] == "output"
    assert "not JSON-serialisable" in outcome["error"]["message"]
