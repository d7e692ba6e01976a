"""Policies: TOML files with which ops teams set limits, allowed modules and per-function overrides.

A spec may ask for *less* than the policy (a shorter ``maxexectime``), never more.
``None`` is never used to mean "unlimited": every limit is explicit, and 0 means zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import PolicyError

_NOBODY = 65534
MIN_WALL_SECONDS = 0.001  # the smallest wall limit a policy, a caller or a spec may set
MAX_WALL_SECONDS = 86_400.0  # the largest wall limit a caller or a spec may ask for
# The vetted modules a policy may allow, by name only (the engine's ``modules.py`` builds their
# proxies and checks at import that it builds exactly these), so loading a policy loads no engine.
MODULE_NAMES: frozenset[str] = frozenset(
    {
        "base64",
        "bisect",
        "cmath",
        "collections",
        "datetime",
        "decimal",
        "fractions",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "random",
        "re",
        "statistics",
        "string",
        "textwrap",
        "time",
        "unicodedata",
        "uuid",
    }
)
# the OS isolation layers a policy may require (faas_sandbox.engine.isolation.LAYERS)
LAYER_NAMES = frozenset(
    {"seccomp", "landlock", "net_namespace", "ipc_namespace", "drop_privileges"}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-call resource limits; every name carries its unit."""

    wall_seconds: float = 10.0  # wall clock, enforced by the parent with SIGKILL
    cpu_seconds: int = (
        10  # ceiling for RLIMIT_CPU (whole seconds); a call gets min(this, ceil(wall))
    )
    memory_mb: int = 256  # RLIMIT_AS headroom over the child's size at fork
    max_result_bytes: int = 1_048_576  # JSON-encoded return value
    max_stdout_bytes: int = 65_536  # captured print() output
    max_open_files: int = 16  # RLIMIT_NOFILE
    max_processes: int = 1  # RLIMIT_NPROC of the sandbox uid (backstop; seccomp denies fork)
    file_size_bytes: int = 0  # RLIMIT_FSIZE: 0 means no file may grow
    max_source_bytes: int = 262_144  # size of a function's source
    max_args_bytes: int = 1_048_576  # JSON-encoded args + kwargs

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise PolicyError(f"{f.name}: expected a number, got {value!r}")
            if f.name != "wall_seconds" and not isinstance(value, int):
                raise PolicyError(f"{f.name}: expected a whole number, got {value!r}")
            if not math.isfinite(value) or value < _MINIMUM.get(f.name, 0):
                raise PolicyError(f"{f.name}: must be >= {_MINIMUM.get(f.name, 0)}, got {value!r}")

    def for_call(self, maxexectime: float | None) -> Limits:
        """The limits of one call: ``maxexectime`` may lower the wall limit, never raise it.

        The CPU limit follows the wall limit (so a long call is not cut short by a smaller
        default), clamped by the policy's ``cpu_seconds``.
        """
        wall = self.wall_seconds
        if maxexectime is not None and maxexectime > 0:
            wall = min(wall, float(maxexectime))
        cpu = max(1, min(self.cpu_seconds, math.ceil(wall)))
        return replace(self, wall_seconds=wall, cpu_seconds=cpu)


_MINIMUM: dict[str, float] = {
    "wall_seconds": MIN_WALL_SECONDS,
    "cpu_seconds": 1,
    "memory_mb": 16,
    "max_result_bytes": 16,
    "max_open_files": 4,
    "max_source_bytes": 1,
    "max_args_bytes": 2,
}
LIMIT_KEYS = frozenset(f.name for f in fields(Limits))
DEFAULT_MODULES = frozenset(
    {
        "math",
        "cmath",
        "json",
        "re",
        "random",
        "statistics",
        "datetime",
        "decimal",
        "fractions",
        "itertools",
        "heapq",
        "bisect",
        "collections",
        "string",
        "textwrap",
        "time",
    }
)


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What one call of one function may do: its limits and importable modules."""

    limits: Limits
    allowed_modules: frozenset[str]


@dataclass(frozen=True, slots=True)
class Policy:
    """A named set of limits, an import allow-list and per-function overrides."""

    name: str = "default"
    limits: Limits = field(default_factory=Limits)
    allowed_modules: frozenset[str] = DEFAULT_MODULES
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    run_as_uid: int = _NOBODY  # used only when the engine runs as root
    run_as_gid: int = _NOBODY
    seccomp: bool = True
    prefork: int = 2  # children forked ahead and waiting (one per core here); 0: on demand
    require: frozenset[str] = frozenset()  # isolation layers without which the Sandbox won't start
    source: str = "<built-in>"

    def __post_init__(self) -> None:
        bad = self.require - LAYER_NAMES
        if bad:
            raise PolicyError(
                f"{self.source}: sandbox.require: unknown layer(s) {sorted(bad)}; "
                f"available: {sorted(LAYER_NAMES)}"
            )
        unknown = self.allowed_modules - MODULE_NAMES
        if unknown:
            raise PolicyError(
                f"{self.source}: imports.allowed: unknown module(s) {sorted(unknown)}; "
                f"available: {sorted(MODULE_NAMES)}"
            )

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read and validate a policy file; every error names the file and the key."""
        # Imported here, not at the top: the sandbox forker imports this module for Limits and
        # never reads a file; tomllib would add ~0.5 MiB that every fork copies.
        import tomllib

        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(f"{path}: no such policy file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: cannot read policy file: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{path}: invalid TOML: {exc}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Policy:
        _check_keys(
            data, {"name", "description", "limits", "imports", "sandbox", "functions"}, source, ""
        )
        limits = _limits(Limits(), _table(data, "limits", source), source, "limits")
        imports = _table(data, "imports", source)
        _check_keys(imports, {"allowed"}, source, "imports")
        allowed = _modules(
            imports.get("allowed", sorted(DEFAULT_MODULES)), source, "imports.allowed"
        )
        sandbox = _table(data, "sandbox", source)
        _check_keys(
            sandbox,
            {"run_as_uid", "run_as_gid", "seccomp", "prefork", "require"},
            source,
            "sandbox",
        )
        functions = _table(data, "functions", source)
        for fname, override in functions.items():
            key = f"functions.{fname}"
            if not isinstance(override, dict):
                raise PolicyError(f"{source}: {key}: expected a table")
            _check_keys(override, LIMIT_KEYS | {"imports"}, source, key)
            _limits(limits, {k: v for k, v in override.items() if k != "imports"}, source, key)
            if "imports" in override:
                _modules(override["imports"], source, f"{key}.imports")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str):
            raise PolicyError(f"{source}: name: expected a string")
        return cls(
            name=name,
            limits=limits,
            allowed_modules=allowed,
            functions=functions,
            run_as_uid=_int(sandbox, "run_as_uid", _NOBODY, source),
            run_as_gid=_int(sandbox, "run_as_gid", _NOBODY, source),
            seccomp=_bool(sandbox, "seccomp", True, source),
            prefork=_int(sandbox, "prefork", 2, source),
            require=_layers(sandbox.get("require", []), source),
            source=source,
        )

    def for_function(self, function: str) -> CallPolicy:
        """The policy of one function, with its ``[functions.NAME]`` overrides applied."""
        override = self.functions.get(function, {})
        limits = replace(self.limits, **{k: v for k, v in override.items() if k != "imports"})
        modules = self.allowed_modules
        if "imports" in override:
            modules = frozenset(override["imports"])
        return CallPolicy(limits, modules)

    def ceiling(self, limit: str) -> float:
        """The largest value of Limits field ``limit`` any function has (the policy's own or an
        override): the bound for reading or parsing before the function is known."""
        every = [self.limits, *(self.for_function(f).limits for f in self.functions)]
        values: list[float] = [getattr(limits, limit) for limits in every]
        return max(values)

    def for_call(self, function: str, maxexectime: float | None = None) -> CallPolicy:
        base = self.for_function(function)
        return CallPolicy(base.limits.for_call(maxexectime), base.allowed_modules)

    def describe(self, function: str | None = None) -> dict[str, Any]:
        """A JSON-able view, as ``faas-sandbox policy show`` prints it."""
        call = (
            self.for_function(function)
            if function
            else CallPolicy(self.limits, self.allowed_modules)
        )
        out: dict[str, Any] = {"name": self.name, "source": self.source}
        if function:
            out["function"] = function
        out["limits"] = {f.name: getattr(call.limits, f.name) for f in fields(Limits)}
        out["imports"] = {"allowed": sorted(call.allowed_modules)}
        out["sandbox"] = {
            "run_as_uid": self.run_as_uid,
            "run_as_gid": self.run_as_gid,
            "seccomp": self.seccomp,
            "prefork": self.prefork,
            "require": sorted(self.require),
        }
        if not function:
            out["functions"] = sorted(self.functions)
        return out


def _table(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise PolicyError(f"{source}: {key}: expected a table")
    return value


def _check_keys(
    table: dict[str, Any], allowed: set[str] | frozenset[str], source: str, where: str
) -> None:
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise PolicyError(f"{source}: {full}: unknown key (expected one of {sorted(allowed)})")


def _limits(base: Limits, table: dict[str, Any], source: str, where: str) -> Limits:
    _check_keys(table, LIMIT_KEYS, source, where)
    try:
        return replace(base, **table)
    except PolicyError as exc:
        raise PolicyError(f"{source}: {where}.{exc}") from None


def _modules(value: Any, source: str, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise PolicyError(f"{source}: {where}: expected a list of module names")
    unknown = set(value) - MODULE_NAMES
    if unknown:
        raise PolicyError(
            f"{source}: {where}: unknown module(s) {sorted(unknown)}; "
            f"available: {sorted(MODULE_NAMES)}"
        )
    return frozenset(value)


def _layers(value: Any, source: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(
            f"{source}: sandbox.require: expected a list of layer names "
            f"({', '.join(sorted(LAYER_NAMES))})"
        )
    return frozenset(value)


def _int(table: dict[str, Any], key: str, default: int, source: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PolicyError(f"{source}: sandbox.{key}: expected a whole number >= 0, got {value!r}")
    return value


def _bool(table: dict[str, Any], key: str, default: bool, source: str) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise PolicyError(f"{source}: sandbox.{key}: expected true or false, got {value!r}")
    return value
