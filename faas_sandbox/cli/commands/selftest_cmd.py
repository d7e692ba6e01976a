"""``faas-sandbox selftest [--policy P] [--json]``: prove on this host that the OS layer holds.

Runs every attacker probe in a real sandbox child set up exactly as for a call (see
:mod:`faas_sandbox.engine.isolation.selftest`) and prints one line per probe, or with
``--json`` ``{"probes": [{"name", "denied", "detail"}], "layers": {...}, ...}``.
Exit 0 only when every probe was denied; 1 when one was not; 2 for a usage error (bad
policy) or when the sandbox cannot start at all (e.g. a required layer is missing).
"""

from __future__ import annotations

import json
from typing import Any

import click

from ...errors import EngineError, PolicyError
from ...policy import Policy
from ..dispatch import EXIT_FAILED, EXIT_OK, usage_error


def run_selftest(policy: Policy) -> dict[str, Any]:
    from ...engine.isolation import selftest  # imported late: the CLI stays light

    return selftest.run(policy)


@click.command("selftest")
@click.option("--policy", "policy_path", default=None, help="Policy file (default: built-in).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def selftest_command(policy_path: str | None, as_json: bool) -> None:
    """Try to escape the OS layer from real sandbox children; exit 0 only if all is denied."""
    from ...engine.isolation import describe
    from ...engine.isolation.selftest import passed

    try:
        policy = Policy.load(policy_path) if policy_path else Policy()
    except PolicyError as exc:
        usage_error(str(exc))
        return
    try:
        report = run_selftest(policy)
    except EngineError as exc:
        usage_error(f"the sandbox did not start: {exc}")
        return
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(
            f"policy {report['policy']!r}, euid {report['euid']}: {describe(report['layers'])}"
        )
        for probe in report["probes"]:
            mark = "denied " if probe["denied"] else "ALLOWED"
            click.echo(f"  {mark} {probe['name']}: {probe['detail']}")
    ok = passed(report)
    if not as_json:
        denied = sum(p["denied"] for p in report["probes"])
        click.echo(f"{denied}/{len(report['probes'])} probes denied")
    raise SystemExit(EXIT_OK if ok else EXIT_FAILED)
