"""``faas-sandbox policy check PATH`` and ``policy show PATH [--function NAME]``."""

from __future__ import annotations

import json

import click

from ...errors import PolicyError
from ...policy import Policy
from ..dispatch import EXIT_FAILED, EXIT_USAGE, usage_error


@click.group("policy")
def policy_group() -> None:
    """Validate and inspect policy files."""


def _load(path: str) -> Policy:
    try:
        return Policy.load(path)
    except PolicyError as exc:
        usage_error(str(exc))
        raise SystemExit(EXIT_USAGE) from None  # unreachable; usage_error exits


@policy_group.command("check")
@click.argument("path")
def check(path: str) -> None:
    """Exit 0 if PATH is a valid policy; else print the file and key at fault and exit 1."""
    try:
        policy = Policy.load(path)
    except PolicyError as exc:
        click.echo(f"faas-sandbox: error: {exc}", err=True)
        raise SystemExit(EXIT_FAILED) from None
    click.echo(f"{path}: ok (policy {policy.name!r}, {len(policy.functions)} function override(s))")


@policy_group.command("show")
@click.argument("path")
@click.option("--function", "function", default=None, help="Show the limits of one function.")
def show(path: str, function: str | None) -> None:
    """Print the effective policy (optionally for one function) as JSON."""
    policy = _load(path)
    click.echo(json.dumps(policy.describe(function), indent=2, sort_keys=True))
