"""``faas-sandbox call NAME [ARGS]...``: call a deployed function through Colonies.

Each ARG is JSON when it parses (``21``, ``"x"``, ``[1,2]``), else a plain string; ``--kwargs``
takes a JSON object. The call's limits come from the policy (``--policy``, as the executor's):
maxexectime = its wall limit for NAME, rounded up, lowered by ``--maxexectime``; maxwaittime and
maxretries are always set too. Prints the output (one value per line; strings raw, the rest as
JSON) or, with ``--json``, ``{ok, output, error: {kind, message}, processid}``.

Exit status: 0 ok, 1 the call failed (reason on stderr), 2 usage, 3 Colonies unreachable.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import click

from ...colonies.client import DEFAULT_EXECUTOR_TYPE
from ...policy import MIN_WALL_SECONDS
from ..dispatch import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, usage_error
from ._colonies import colonies_errors, connect, fail, load_policy


def parse_arg(text: str) -> Any:
    """JSON when ``text`` parses as JSON, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@click.command("call")
@click.argument("name")
@click.argument("args", nargs=-1)
@click.option(
    "--kwargs",
    "kwargs_json",
    default=None,
    metavar="JSON",
    help="Keyword arguments as a JSON object.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait for the result, or print the process id and return at once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option(
    "--maxexectime",
    type=click.FloatRange(min=MIN_WALL_SECONDS),
    default=None,
    metavar="S",
    help="Seconds; may lower the policy's wall limit, never raise it.",
)
@click.option(
    "--maxwaittime",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="S",
    help="Seconds the call may wait for an executor.",
)
@click.option(
    "--executor-type",
    default=DEFAULT_EXECUTOR_TYPE,
    show_default=True,
    help="Executor type to submit to (the executor's option of the same name).",
)
@click.option(
    "--policy",
    "policy_path",
    default=None,
    metavar="PATH",
    help="Policy the limits come from [default: the built-in default policy].",
)
@click.option(
    "--wait-strategy",
    type=click.Choice(["ws", "poll"]),
    default="ws",
    show_default=True,
    help="How the end of the call is detected.",
)
def call_command(
    name: str,
    args: tuple[str, ...],
    kwargs_json: str | None,
    wait: bool,
    as_json: bool,
    maxexectime: float | None,
    maxwaittime: int,
    executor_type: str,
    policy_path: str | None,
    wait_strategy: str,
) -> None:
    """Call function NAME with ARGS through Colonies and print its output."""
    from ...colonies.backend import ColoniesBackend
    from ...colonies.calls import make_request
    from ...errors import SpecError
    from ...kinds import ErrorKind
    from ...names import function_name, keyword_name

    kwargs: dict[str, Any] = {}
    if kwargs_json is not None:
        try:
            kwargs = json.loads(kwargs_json)
        except ValueError as exc:
            usage_error(f"--kwargs: not valid JSON: {exc}")
        if not isinstance(kwargs, dict):
            usage_error("--kwargs: expected a JSON object")
    try:
        function = function_name(name)
        for key in kwargs:
            keyword_name(key)
    except SpecError as exc:
        usage_error(str(exc))
    policy = load_policy(policy_path)
    try:
        request = make_request(
            policy,
            function,
            tuple(parse_arg(a) for a in args),
            kwargs,
            maxexectime,
            maxwaittime=maxwaittime,
        )
    except SpecError as exc:
        usage_error(str(exc))
    backend = ColoniesBackend(connect(), executor_type, wait_strategy)
    with colonies_errors(f"call {name}"):
        revision = backend.current(function)  # pin: exactly the code deployed now runs
    if revision is None:
        fail(f"call {name} failed: not_found: no function {name!r} is deployed")
        return
    request = replace(request, pin=(revision.fileid, revision.sha256))

    if not wait:
        with colonies_errors(f"call {name}"):
            processid = backend.submit(request)
        click.echo(json.dumps({"processid": processid}) if as_json else processid)
        return

    from ...colonies.calls import run_call

    try:
        result = run_call(backend, request)
    except ValueError as exc:  # arguments JSON cannot carry (NaN, ...)
        usage_error(str(exc))
    if as_json:
        click.echo(json.dumps({**result.to_json(), "revision": revision.to_json()}))
    elif result.ok:
        for value in result.output:
            click.echo(format_value(value))
    if result.ok:
        raise SystemExit(EXIT_OK)
    status = EXIT_UNREACHABLE if result.kind == ErrorKind.UNREACHABLE else EXIT_FAILED
    where = f" (process {result.processid})" if result.processid else ""
    fail(f"call {name} failed: {result.kind}: {result.message}{where}", status)
