"""``faas-sandbox functions``: the functions deployed in ColonyFS ``/faas``.

One line per function: name, size of the latest revision, revisions (number of versions) and
when the latest was deployed; ``--json`` prints a JSON array instead. Exit status: 0 ok,
1 refused, 2 settings, 3 Colonies unreachable.
"""

from __future__ import annotations

import json

import click

from ._colonies import colonies_errors, connect


@click.command("functions")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def functions_command(as_json: bool) -> None:
    """List the functions deployed in ColonyFS /faas."""
    from ..inventory import LABEL, list_functions

    client = connect()
    with colonies_errors("list functions"):
        functions = list_functions(client)
    if as_json:
        click.echo(json.dumps([f.to_json() for f in functions]))
        return
    if not functions:
        click.echo(f"no functions deployed in {LABEL}")
        return
    width = max(len("NAME"), *(len(f.name) for f in functions))
    click.echo(f"{'NAME':<{width}}  {'SIZE':>8}  {'REVISIONS':>9}  DEPLOYED AT")
    for f in functions:
        click.echo(f"{f.name:<{width}}  {f.size:>8}  {f.revisions:>9}  {f.deployed_at}")
