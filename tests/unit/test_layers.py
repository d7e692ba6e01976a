"""The layers' import rules, checked where they matter: in a fresh interpreter.

Each case imports one layer's entry points with ``python -I`` (as the forker and the console
script run) and reads ``sys.modules``. A rule broken anywhere down an import chain shows here,
however indirect the import, which a grep over import lines would miss.

- engine: the standard library, RestrictedPython and pyseccomp only; of our own package, only
  ``engine.*`` and the shared modules (SHARED).
- shared modules (``kinds``, ``names``, ``sizes``, ``element``, ``policy``, ``errors``): stdlib
  only, and no layer's module.
- frontend: never the engine (no RestrictedPython, no ``faas_sandbox.engine`` module at all),
  never the executor.
- colonies: never the engine, the front end (no FastAPI), the executor or the CLI.
- executor parent: no HTTP framework, no RestrictedPython (children compile, not the parent).
- cli: ``faas-sandbox --help`` loads no layer; each command imports its own on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys

# The shared vocabulary, outside every layer and standard library only (checked below): the
# failure kinds and process states (``kinds``), the identifier and size rules (``names``,
# ``sizes``), the
# result-element encoding rule the child, the executor and callers share (``element``), the
# policy with its limits and vetted module names (``policy``), and the exceptions (``errors``).
SHARED = {
    "faas_sandbox",
    "faas_sandbox.errors",
    "faas_sandbox.policy",
    "faas_sandbox.kinds",
    "faas_sandbox.names",
    "faas_sandbox.sizes",
    "faas_sandbox.element",
}

WEB = {"fastapi", "starlette", "uvicorn", "pydantic"}
NETWORK = {"pycolonies", "colonies", "boto3", "botocore", "requests", "urllib3", "websocket"}

_PROBE = """
import json, sys
before = set(sys.modules)
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(*entry_points: str) -> set[str]:
    """The modules importing ``entry_points`` adds to a fresh ``python -I``."""
    done = subprocess.run(
        [sys.executable, "-I", "-c", _PROBE, *entry_points],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def tops(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def ours(modules: set[str], *layers: str) -> set[str]:
    names = {f"faas_sandbox.{layer}" for layer in layers}
    return {m for m in modules if m in names or any(m.startswith(f"{n}.") for n in names)}


def test_engine_loads_only_stdlib_restrictedpython_pyseccomp() -> None:
    loaded = loaded_by(
        "faas_sandbox.engine.sandbox",
        "faas_sandbox.engine.forker",
        "faas_sandbox.engine.child",
        "faas_sandbox.engine.isolation.selftest",
    )
    assert "faas_sandbox.engine.forker" in loaded  # the probe really imported the engine
    foreign = (
        tops(loaded)
        - set(sys.stdlib_module_names)
        - {"faas_sandbox", "RestrictedPython", "pyseccomp"}
    )
    assert foreign == set()
    package = {m for m in loaded if m.startswith("faas_sandbox")}
    assert {m for m in package if not m.startswith("faas_sandbox.engine")} <= SHARED


def test_shared_modules_are_stdlib_only_and_load_no_layer() -> None:
    loaded = loaded_by(*sorted(SHARED))
    assert tops(loaded) - set(sys.stdlib_module_names) == {"faas_sandbox"}
    assert {m for m in loaded if m.startswith("faas_sandbox")} == SHARED


def test_frontend_never_loads_the_engine() -> None:
    loaded = loaded_by(
        "faas_sandbox.frontend.app",
        "faas_sandbox.colonies.backend",
        "faas_sandbox.cli.commands.http_cmd",
    )
    assert "fastapi" in loaded
    assert "RestrictedPython" not in tops(loaded)
    assert "pyseccomp" not in tops(loaded)
    assert ours(loaded, "engine") == set()
    assert ours(loaded, "executor") == set()


def test_colonies_loads_no_engine_and_no_web_framework() -> None:
    loaded = loaded_by(
        "faas_sandbox.colonies.client",
        "faas_sandbox.colonies.backend",
        "faas_sandbox.colonies.calls",
        "faas_sandbox.colonies.lifecycle",
        "faas_sandbox.colonies.inventory",
        "faas_sandbox.colonies.spec",
    )
    assert "faas_sandbox.colonies.transport" in loaded
    # Our own transport: no client library, no HTTP library beyond the standard one.
    assert tops(loaded) & {"pycolonies", "requests", "urllib3"} == set()
    assert tops(loaded) & WEB == set()
    assert "RestrictedPython" not in tops(loaded)
    assert ours(loaded, "engine") == set()
    assert ours(loaded, "frontend", "executor", "cli") == set()


def test_executor_parent_loads_no_web_framework_and_no_restrictedpython() -> None:
    loaded = loaded_by(
        "faas_sandbox.executor.loop",
        "faas_sandbox.executor.registration",
        "faas_sandbox.executor.liveness",
        "faas_sandbox.engine.sandbox",
        "faas_sandbox.cli.commands.executor_cmd",
    )
    assert "faas_sandbox.engine.sandbox" in loaded
    assert tops(loaded) & (WEB - {"pydantic"}) == set()
    assert "RestrictedPython" not in tops(loaded)
    assert ours(loaded, "frontend") == set()


def test_cli_dispatch_loads_no_layer() -> None:
    loaded = loaded_by("faas_sandbox.cli")
    assert "faas_sandbox.cli.dispatch" in loaded
    assert tops(loaded) & (WEB | NETWORK | {"RestrictedPython", "pyseccomp"}) == set()
    assert ours(loaded, "engine") == set()
    assert ours(loaded, "colonies", "executor", "frontend") == set()


def test_python_m_faas_sandbox_runs_the_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "faas_sandbox", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "executor" in done.stdout and "http" in done.stdout
