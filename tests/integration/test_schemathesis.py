"""schemathesis (``--checks all``) against a live front end on the real stack.

The front end requires tokens; the token schemathesis uses may call only this module's own
functions (``convert`` and a benign echo), so generated calls never run other tests' code.
The run is bounded (``--max-examples``, fixed seed) so it stays well inside CI's budget;
schemathesis.toml at the repository root holds the few documented exceptions.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faas_live import CONVERT_SOURCE, REPO, deploy, executor, frontend, run_cli, unique

pytestmark = pytest.mark.colonies

ECHO = f"fdecho_{unique('')}"
ECHO_SOURCE = (
    f"def {ECHO}(a=0, b=0, *args, **kwargs):\n"
    f"    return {{'a': a, 'b': b, 'n': len(args), 'k': sorted(kwargs)}}\n"
)
SCHEMATHESIS = str(REPO / ".venv" / "bin" / "schemathesis")


@pytest.fixture(scope="module")
def secured(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    deploy("convert", CONVERT_SOURCE)
    deploy(ECHO, ECHO_SOURCE)
    work = tmp_path_factory.mktemp("st")
    tokens = work / "tokens.json"
    added = run_cli(
        "token", "add", "schemathesis", "--functions", f"convert,{ECHO}", "--tokens", str(tokens)
    )
    assert added.returncode == 0, added.stderr
    etype = unique("faas-st-")
    with (
        executor(etype, work / "executor.log"),
        frontend(etype, work / "http.log", "--tokens", str(tokens), "--rate-limit", "1000") as url,
    ):
        yield url, added.stdout.strip()


def test_schemathesis_all_checks_pass(secured: tuple[str, str], tmp_path: Path) -> None:
    url, token = secured
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(REPO / "schemathesis.toml"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "8",
            "--seed",
            "20261206",
            "--no-color",
            # one worker: hypothesis describes strategies with ast.parse, which CPython 3.11 can
            # fail from two threads at once ("AST constructor recursion depth mismatch")
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout
