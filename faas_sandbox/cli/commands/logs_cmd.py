"""``faas-sandbox logs PROCESSID``: a call's captured output (its Colonies process log).

Prints the log messages in order, as the executor wrote them (captured ``print`` output and a
closing ``[faas-sandbox] ...`` line). Exit status: 0 ok, 1 no such process, 2 settings,
3 Colonies unreachable.
"""

from __future__ import annotations

import click

from ._colonies import colonies_errors, connect


@click.command("logs")
@click.argument("processid")
def logs_command(processid: str) -> None:
    """Print the captured output of call PROCESSID."""
    client = connect()
    with colonies_errors(f"logs of {processid}"):
        entries = client.get_logs(processid, 500)
    for entry in entries:
        message = str(entry.get("message", ""))
        click.echo(message, nl=not message.endswith("\n"))
