"""``faas-sandbox exec PATH --function NAME [--args JSON] [--kwargs JSON] [--policy PATH]
[--maxexectime SECONDS]``: one sandboxed call, its outcome as one JSON object on stdout.

Exit status: 0 the call succeeded, 1 the function failed or was stopped (the JSON says how),
2 usage error (missing file, bad JSON, invalid policy) with one line on stderr.
"""

from __future__ import annotations

import json
import os
from typing import Any

import click

from ...engine.outcome import Outcome
from ...errors import EngineError, PolicyError
from ...kinds import ErrorKind
from ...policy import MIN_WALL_SECONDS, Policy
from ..dispatch import EXIT_FAILED, EXIT_OK, configure_logging, usage_error


def _json_arg(text: str | None, option: str, kind: type) -> Any:
    if text is None:
        return kind()
    try:
        value = json.loads(text)
    except ValueError as exc:
        usage_error(f"{option}: not valid JSON: {exc}")
    if not isinstance(value, kind):
        usage_error(
            f"{option}: expected a JSON {'array' if kind is list else 'object'}, "
            f"got {type(value).__name__}"
        )
    return value


def _read_source(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        usage_error(f"{path}: no such file")
    except IsADirectoryError:
        usage_error(f"{path}: is a directory")
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(f"{path}: cannot read: {exc}")
    raise AssertionError("unreachable")  # pragma: no cover


@click.command("exec")
@click.argument("path")
@click.option("--function", "function", required=True, help="Name of the function to call.")
@click.option(
    "--args",
    "args_json",
    default=None,
    metavar="JSON_ARRAY",
    help="Positional arguments, as a JSON array.",
)
@click.option(
    "--kwargs",
    "kwargs_json",
    default=None,
    metavar="JSON_OBJECT",
    help="Keyword arguments, as a JSON object.",
)
@click.option(
    "--policy",
    "policy_path",
    default=None,
    metavar="PATH",
    help="Policy TOML file (default: the built-in defaults).",
)
@click.option(
    "--maxexectime",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Wall-clock limit; may lower the policy's, never raise it.",
)
def exec_command(
    path: str,
    function: str,
    args_json: str | None,
    kwargs_json: str | None,
    policy_path: str | None,
    maxexectime: float | None,
) -> None:
    """Run FUNCTION from the Python file PATH in the sandbox and print the outcome as JSON."""
    configure_logging(os.environ.get("FAAS_SANDBOX_LOG_LEVEL", "WARNING"))
    source = _read_source(path)
    args = _json_arg(args_json, "--args", list)
    kwargs = _json_arg(kwargs_json, "--kwargs", dict)
    if maxexectime is not None and not maxexectime >= MIN_WALL_SECONDS:
        usage_error(
            f"--maxexectime: must be at least {MIN_WALL_SECONDS:g} seconds, got {maxexectime}"
        )
    policy = Policy()
    if policy_path is not None:
        try:
            policy = Policy.load(policy_path)
        except PolicyError as exc:
            usage_error(str(exc))
    from ...engine.sandbox import Sandbox  # the engine only when a call will really run

    try:
        with Sandbox(policy) as sandbox:
            outcome = sandbox.call(source, function, args, kwargs, maxexectime=maxexectime)
    except EngineError as exc:
        outcome = Outcome.failure(ErrorKind.CRASH, str(exc))
    click.echo(json.dumps(outcome.to_json()))
    raise click.exceptions.Exit(EXIT_OK if outcome.ok else EXIT_FAILED)
