"""``faas-sandbox status``: the colony's executors and its processes by state.

Exit status: 0 ok, 1 refused, 2 settings, 3 Colonies unreachable.
"""

from __future__ import annotations

import json

import click

from ._colonies import colonies_errors, connect


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also list unregistered and rejected executors."
)
def status_command(as_json: bool, show_all: bool) -> None:
    """Show the colony's executors and waiting/running/successful/failed counts."""
    from ...colonies.inventory import colony_status
    from ...kinds import ExecutorState

    client = connect()
    with colonies_errors("colony status"):
        status = colony_status(client)
    if as_json:
        click.echo(json.dumps(status.to_json()))
        return
    shown = [
        e
        for e in status.executors
        if show_all or e.state in (ExecutorState.APPROVED.label, ExecutorState.PENDING.label)
    ]
    active = sum(1 for e in status.executors if e.state == ExecutorState.APPROVED.label)
    click.echo(
        f"colony {status.colony}: {active} approved executor(s), {len(status.executors)} registered"
    )
    if shown:
        name_w = max(len("EXECUTOR"), *(len(e.name) for e in shown))
        type_w = max(len("TYPE"), *(len(e.type) for e in shown))
        click.echo(f"  {'EXECUTOR':<{name_w}}  {'TYPE':<{type_w}}  {'STATE':<12}  LAST HEARD")
        for e in shown:
            click.echo(
                f"  {e.name:<{name_w}}  {e.type:<{type_w}}  {e.state:<12}  {e.last_heard or '-'}"
            )
    counts = "  ".join(f"{k} {v}" for k, v in status.processes.items())
    click.echo(f"processes: {counts}")
