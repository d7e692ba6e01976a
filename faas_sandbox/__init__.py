"""faas-sandbox: run untrusted Python functions on ColonyOS, one fresh sandboxed process per call.

Public API::

    from faas_sandbox import Sandbox, Policy
    with Sandbox(Policy.load("policies/default.toml")) as sb:
        outcome = sb.call(source, "convert", args=[21.0])
        outcome.ok, outcome.value, outcome.error_kind, outcome.usage

Layers (one sub-package each; ``tests/unit/test_layers.py`` enforces the arrows)::

    cli ──► frontend ──► colonies            engine: stdlib, RestrictedPython, pyseccomp
     └────► executor ──► colonies, engine    frontend and colonies: never the engine

Shared by all: ``policy``, ``settings``, ``errors``, ``metrics``, ``devenv``, ``kinds`` (the
failure kinds and the process states) and the engine's vocabulary modules, stdlib only
(``engine.outcome``: a call's result; ``engine.module_names``; ``engine.element``: how a result
travels as an output element).
"""

from __future__ import annotations

from .engine.outcome import Outcome, Usage
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

__all__ = [
    "CallPolicy", "ColoniesError", "EngineError", "ErrorKind", "Limits", "Outcome", "Policy",
    "PolicyError", "ProcessState", "Sandbox", "SandboxError", "SettingsError", "SpecError", "Usage",
]


def __getattr__(name: str) -> object:
    # Sandbox pulls in the engine; load it on first use only.
    if name == "Sandbox":
        from .engine.sandbox import Sandbox

        return Sandbox
    raise AttributeError(name)
