"""``faas-sandbox functions [show|history|rm|rollback]``: deployed functions in ColonyFS /faas.

``functions`` alone lists them: name, size of the latest revision, revisions and when the
latest was deployed (``--json``: a JSON array). ``show NAME [--revision N]`` prints a
revision's source (default the current one), ``history NAME`` its revisions (1 = the first
deploy), ``rm NAME`` removes every revision (its S3 object, then its metadata; an object in a
store other than AWS_S3_* is kept and named on stderr), ``rollback NAME [--to N]`` deploys
revision N (default: the one before the current) again as the newest. Revision contents come
from S3 (AWS_S3_* as for deploy). Exit status: 0 ok, 1 refused / no such function or revision,
2 settings, 3 Colonies or S3 unreachable.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import click

from ..dispatch import EXIT_UNREACHABLE, usage_error
from ._colonies import colonies_errors, connect, fail

if TYPE_CHECKING:
    from ...colonies.client import ColoniesClient
    from ...colonies.lifecycle import Revision
    from ...names import FunctionName


@click.group("functions", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_context
def functions_command(ctx: click.Context, as_json: bool) -> None:
    """List the functions deployed in ColonyFS /faas (or manage one: see the commands)."""
    if ctx.invoked_subcommand is not None:
        return
    from ...colonies.inventory import list_functions
    from ...colonies.lifecycle import LABEL

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


def _checked(name: str) -> FunctionName:
    """NAME as a checked function name (the one rule, names.py); exit 2 if it is not one."""
    from ...errors import SpecError
    from ...names import function_name

    try:
        return function_name(name)
    except SpecError as exc:
        usage_error(str(exc))
        raise  # not reached: usage_error exits


def _history(client: ColoniesClient, name: FunctionName) -> list[Revision]:
    from ...colonies.lifecycle import history

    with colonies_errors(f"history of {name}"):
        revisions = history(client, name)
    if not revisions:
        fail(f"error: no function {name!r} is deployed")
    return revisions


def _pick(revisions: list[Revision], number: int | None, name: str) -> Revision:
    if number is None:
        return revisions[-1]
    for revision in revisions:
        if revision.number == number:
            return revision
    fail(f"error: {name} has revisions 1..{len(revisions)}, not {number}")
    raise AssertionError("unreachable")


def _source(client: ColoniesClient, name: FunctionName, revision: Revision) -> bytes:
    from ...errors import CodeUnavailable, FunctionNotFound, SettingsError
    from ...executor.codestore import CodeStore
    from ...settings import Settings

    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as exc:
        usage_error(str(exc))
    store = CodeStore(client, settings.s3)
    try:
        code = store.get_revision(name, revision.fileid, revision.sha256)
    except CodeUnavailable as exc:
        fail(f"error: {exc}", EXIT_UNREACHABLE)
    except FunctionNotFound as exc:
        fail(f"error: {exc}")
    return code.source.encode()


@functions_command.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
def history_command(name: str, as_json: bool) -> None:
    """List NAME's revisions, oldest first; the last is the current one."""
    revisions = _history(connect(), _checked(name))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in revisions]))
        return
    click.echo(f"{'REV':>4}  {'SIZE':>8}  {'SHA256':<16}  {'FILE ID':<16}  ADDED")
    for r in revisions:
        mark = " (current)" if r is revisions[-1] else ""
        click.echo(
            f"{r.number:>4}  {r.size:>8}  {r.sha256[:16]:<16}  {r.fileid[:16]:<16}  {r.added}{mark}"
        )


@functions_command.command("show")
@click.argument("name")
@click.option(
    "--revision",
    "number",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Revision number (see history) [default: the current one].",
)
def show_command(name: str, number: int | None) -> None:
    """Print the source of NAME (a revision of it)."""
    name = _checked(name)
    client = connect()
    revision = _pick(_history(client, name), number, name)
    click.echo(_source(client, name, revision).decode("utf-8"), nl=False)


@functions_command.command("rm")
@click.argument("name")
def rm_command(name: str) -> None:
    """Remove NAME: every revision's S3 object and metadata (calls then answer not_found)."""
    from ...errors import CodeUnavailable, SettingsError
    from ...executor.publish import CodePublisher
    from ...settings import Settings

    name = _checked(name)
    client = connect()
    _history(client, name)  # exit 1 if there is nothing to remove
    try:
        settings = Settings.from_env(os.environ)
        settings.s3.require_upload()  # the store deploy wrote to, and its credentials
    except SettingsError as exc:
        usage_error(str(exc))
    with colonies_errors(f"remove {name}"):
        try:
            removal = CodePublisher(client, settings.s3).remove(name)
        except CodeUnavailable as exc:
            fail(f"error: cannot remove {name}: {exc}", EXIT_UNREACHABLE)
    for note in removal.kept:
        click.echo(f"faas-sandbox: kept the S3 object of {name} {note}", err=True)
    click.echo(f"removed {name} ({removal.revisions} revision(s), {removal.objects} S3 object(s))")


@functions_command.command("rollback")
@click.argument("name")
@click.option(
    "--to",
    "number",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Revision to make current again [default: the one before the current].",
)
def rollback_command(name: str, number: int | None) -> None:
    """Deploy an earlier revision of NAME again, as its newest revision."""
    from ...errors import CodeUnavailable, SettingsError
    from ...executor.publish import CodePublisher
    from ...settings import Settings

    name = _checked(name)
    client = connect()
    revisions = _history(client, name)
    if number is None:
        if len(revisions) < 2:
            fail(f"error: {name} has one revision: nothing to roll back to")
        number = revisions[-2].number
    target = _pick(revisions, number, name)
    data = _source(client, name, target)
    try:
        settings = Settings.from_env(os.environ)
        settings.s3.require_upload()
    except SettingsError as exc:
        usage_error(str(exc))
    with colonies_errors(f"rollback {name}"):
        try:
            meta, changed = CodePublisher(client, settings.s3).upload(name, data)
        except CodeUnavailable as exc:
            fail(f"error: cannot upload {name}: {exc}", EXIT_UNREACHABLE)
    state = "is already" if not changed else "now"
    click.echo(
        f"{name}: revision {target.number} {state} current (file id "
        f"{str(meta.get('fileid', ''))[:12]})"
    )
