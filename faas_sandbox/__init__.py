"""faas-sandbox: run untrusted Python functions on ColonyOS, one fresh sandboxed process per call.

Public API::

    from faas_sandbox import Sandbox, Policy
    with Sandbox(Policy.load("policies/default.toml")) as sb:
        outcome = sb.call(source, "convert", args=[21.0])
        outcome.ok, outcome.value, outcome.error_kind, outcome.usage

Layers (one sub-package each; ``tests/unit/test_layers.py`` enforces the arrows)::

    cli ──► frontend ──► colonies            engine: stdlib, RestrictedPython, pyseccomp
     └────► executor ──► colonies, engine    frontend and colonies: never the engine

Shared by all, stdlib only: ``policy`` (limits, the vetted module names), ``settings``,
``errors``, ``metrics``, ``devenv``, ``kinds`` (the failure kinds and the process states),
``names`` and ``sizes`` (the function-name, process-id and size rules) and ``element`` (how a result
travels as an output element). ``Outcome`` and ``Usage`` (a sandboxed call's result) are the
engine's and, like ``Sandbox``, load the engine on first use only: the front end never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    ColoniesError,
    EngineError,
    PolicyError,
    SandboxError,
    SettingsError,
    SpecError,
)
from .kinds import ErrorKind, ProcessState
from .policy import CallPolicy, Limits, Policy

if TYPE_CHECKING:
    from .engine.outcome import Outcome, Usage
    from .engine.sandbox import Sandbox

__all__ = [
    "CallPolicy",
    "ColoniesError",
    "EngineError",
    "ErrorKind",
    "Limits",
    "Outcome",
    "Policy",
    "PolicyError",
    "ProcessState",
    "Sandbox",
    "SandboxError",
    "SettingsError",
    "SpecError",
    "Usage",
]


def __getattr__(name: str) -> object:
    # Sandbox, Outcome and Usage are the engine's; load it on first use only.
    if name == "Sandbox":
        from .engine.sandbox import Sandbox

        return Sandbox
    if name in ("Outcome", "Usage"):
        from .engine import outcome

        return getattr(outcome, name)
    raise AttributeError(name)
