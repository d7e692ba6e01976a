"""``faas-sandbox result PROCESSID [--wait] [--json]``: how a call (async or not) ended.

Prints the output like ``call`` does (one value per line) once the call succeeded; with
``--json`` one object ``{processid, state, function, output, kind, message, revision}``.
Exit status: 0 successful, 1 failed (reason on stderr) or no such process, 2 usage,
3 Colonies unreachable, 4 not finished yet (without ``--wait``, or ``--timeout`` passed).
"""

from __future__ import annotations

import json

import click

from ..dispatch import EXIT_FAILED, EXIT_UNREACHABLE, usage_error
from ._colonies import colonies_errors, connect, fail

EXIT_PENDING = 4


@click.command("result")
@click.argument("processid")
@click.option("--wait", is_flag=True, help="Wait until the call is finished.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=300.0,
    show_default=True,
    metavar="S",
    help="How long --wait waits at most.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def result_command(processid: str, wait: bool, timeout: float, as_json: bool) -> None:
    """Print the result of call PROCESSID (see `call --no-wait`, HTTP ?mode=async)."""
    from ...colonies.backend import ColoniesBackend
    from ...errors import SpecError
    from ...kinds import ErrorKind
    from ...names import processid as checked
    from .call_cmd import format_value

    try:
        processid = checked(processid)
    except SpecError as exc:
        usage_error(f"PROCESSID: {exc}")
    backend = ColoniesBackend(connect())
    with colonies_errors(f"result of {processid}"):
        result = backend.wait(processid, timeout) if wait else backend.get(processid)
    if as_json:
        click.echo(json.dumps({**result.status_json(), "processid": processid}))
    elif result.ok:
        for value in result.output:
            click.echo(format_value(value))
    if not result.final:
        state = result.state.label if result.state is not None else "unknown"
        fail(f"call {processid} is not finished: {state}", EXIT_PENDING)
    elif not result.ok:
        status = EXIT_UNREACHABLE if result.kind == ErrorKind.UNREACHABLE else EXIT_FAILED
        fail(f"call {processid} failed: {result.kind}: {result.message}", status)
