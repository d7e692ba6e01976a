from __future__ import annotations

from pathlib import Path

import pytest

from faas_sandbox.errors import PolicyError
from faas_sandbox.policy import Limits, Policy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["default.toml", "strict.toml"])
def test_shipped_policies_load(name: str) -> None:
    policy = Policy.load(ROOT / "policies" / name)
    assert policy.name == name.removesuffix(".toml")
    assert "math" in policy.allowed_modules


def test_builtin_defaults_match_default_toml() -> None:
    shipped = Policy.load(ROOT / "policies" / "default.toml")
    assert shipped.limits == Policy().limits
    assert shipped.allowed_modules == Policy().allowed_modules


def test_maxexectime_lowers_wall_and_cpu_follows() -> None:
    limits = Limits(wall_seconds=10.0, cpu_seconds=10)
    call = limits.for_call(2.5)
    assert call.wall_seconds == 2.5
    assert call.cpu_seconds == 3


def test_maxexectime_never_raises_the_policy() -> None:
    call = Limits(wall_seconds=10.0, cpu_seconds=4).for_call(60)
    assert call.wall_seconds == 10.0
    assert call.cpu_seconds == 4


@pytest.mark.parametrize("value", [None, 0, -1])
def test_missing_or_non_positive_maxexectime_means_policy_default(value: float | None) -> None:
    assert Limits().for_call(value) == Limits()


def test_function_override_applies_only_to_that_function() -> None:
    policy = Policy.from_dict(
        {"functions": {"convert": {"wall_seconds": 2.0, "imports": ["math"]}}}
    )
    assert policy.for_call("convert").limits.wall_seconds == 2.0
    assert policy.for_call("convert").allowed_modules == frozenset({"math"})
    assert policy.for_call("other").limits.wall_seconds == Limits().wall_seconds


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[limits]\nmemroy_mb = 5\n", "limits.memroy_mb: unknown key"),
        ("[limits]\nmemory_mb = 'a lot'\n", "limits.memory_mb: expected a number"),
        ("[limits]\nmemory_mb = 1\n", "limits.memory_mb: must be >= 16"),
        ("[limits]\ncpu_seconds = 1.5\n", "limits.cpu_seconds: expected a whole number"),
        ("[imports]\nallowed = ['os']\n", "imports.allowed: unknown module(s) ['os']"),
        ("[functions.f]\nwall = 1\n", "functions.f.wall: unknown key"),
        ("[functions.f]\nwall_seconds = -1\n", "functions.f.wall_seconds: must be >="),
        ("[sandbox]\nseccomp = 'yes'\n", "sandbox.seccomp: expected true or false"),
        ("colour = 1\n", "colour: unknown key"),
        ("[limits\n", "invalid TOML"),
    ],
)
def test_bad_policies_name_file_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        Policy.load(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_missing_policy_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        Policy.load(tmp_path / "nope.toml")
