"""``faas-sandbox deploy PATH [--function NAME]...``: put functions into ColonyFS /faas.

The layout is the tutorial's (``upload_data(filename=NAME, label="/faas")``): one file per
function, file name = function name. The file's content is the WHOLE of PATH, uploaded under
each chosen name, so functions keep their module-level helpers, constants and imports; the
executor runs the file and calls the named function. Without --function every top-level
function is deployed. Before anything is uploaded the file must
compile under the sandbox's restricted compiler (errors with line numbers, exit 1; it also
refuses names starting with ``_`` and ``async def``) and every chosen name must be a top-level
``def``. An unchanged function (same SHA-256 as its latest
revision) is not uploaded again.

Needs COLONIES_SERVER_HOST/PORT/TLS, COLONIES_COLONY_NAME, COLONIES_PRVKEY (a member key) and
AWS_S3_ENDPOINT/ACCESSKEY/SECRETKEY/BUCKET (+ AWS_S3_TLS, AWS_S3_REGION). Exit status: 0 ok,
1 refused (compile errors, missing function, server said no), 2 usage/settings, 3 unreachable.
"""

from __future__ import annotations

import ast
import os
import sys

import click

from ...errors import CodeUnavailable, PolicyError, SettingsError, SpecError
from ...names import FunctionName, function_name
from ...policy import Policy
from ..dispatch import EXIT_FAILED, EXIT_UNREACHABLE, usage_error
from ._colonies import colonies_errors


def _fail(message: str, status: int = EXIT_FAILED) -> None:
    click.echo(f"faas-sandbox: {message}", err=True)
    sys.exit(status)


def top_level_functions(tree: ast.Module) -> list[str]:
    """Names of the top-level ``def``s (the restricted compiler has already refused async)."""
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]


def choose(path: str, source: str, wanted: tuple[FunctionName, ...]) -> list[FunctionName]:
    """The function names to deploy from ``source``; exits 1 with the reason if none can be."""
    from ...engine.guards import compile_source

    compiled = compile_source(source, filename=path)
    if compiled.code is None:
        for error in compiled.errors:
            click.echo(f"{path}: {error}", err=True)
        _fail(f"{path}: does not compile in the sandbox; nothing deployed")
    defs = top_level_functions(ast.parse(source, filename=path))
    names = list(wanted) or defs
    if not names:
        _fail(f"{path}: no top-level function to deploy")
    for name in names:
        if name not in defs:
            _fail(f"{path}: no top-level function {name!r} (found: {', '.join(defs) or 'none'})")
    try:
        return [function_name(name) for name in names]  # a def's name may be too long
    except SpecError as exc:
        _fail(f"{path}: {exc}")
        raise  # not reached: _fail exits


@click.command("deploy")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option(
    "--function",
    "functions",
    multiple=True,
    metavar="NAME",
    help="Deploy only this function (repeatable) [default: every top-level one].",
)
@click.option(
    "--policy",
    "policy_path",
    default=None,
    metavar="PATH",
    help="Policy whose max_source_bytes applies [default: the built-in one].",
)
def deploy_command(path: str, functions: tuple[str, ...], policy_path: str | None) -> None:
    """Check PATH's functions compile in the sandbox, then upload them to ColonyFS /faas."""
    try:
        wanted = tuple(function_name(name) for name in functions)
    except SpecError as exc:
        usage_error(f"--function: {exc}")
    try:
        policy = Policy.load(policy_path) if policy_path else Policy()
    except PolicyError as exc:
        usage_error(str(exc))
    with open(path, "rb") as f:
        data = f.read()
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"{path}: not UTF-8 text ({exc})")
    from ..sourcecheck import problems

    largest = int(policy.ceiling("max_source_bytes"))
    if len(data) > largest:  # before compiling or parsing anything
        _fail(
            f"{path}: {len(data)} bytes, over every function's max_source_bytes (at most {largest})"
        )
    names = choose(path, source, wanted)
    for name in names:
        found = problems(data, policy, name, filename=path)
        for problem in found:
            click.echo(f"{path}: {problem}", err=True)
        if found:
            _fail(f"{path}: {name} can never run under policy {policy.name!r}; nothing deployed")

    from ...colonies.client import ColoniesClient
    from ...executor.publish import CodePublisher
    from ...settings import Settings

    try:
        settings = Settings.from_env(os.environ)
        prvkey = settings.require_prvkey()
        settings.s3.require_upload()
    except SettingsError as exc:
        usage_error(str(exc))
    client = ColoniesClient.connect(
        settings.host, settings.port, settings.tls, settings.colony_name, prvkey
    )
    store = CodePublisher(client, settings.s3)
    for name in names:
        with colonies_errors(f"deploy {name}"):
            try:
                meta, changed = store.upload(name, data)
            except CodeUnavailable as exc:
                _fail(f"cannot upload {name}: {exc}", EXIT_UNREACHABLE)
        fileid = str(meta.get("fileid", ""))[:12]
        if changed:
            click.echo(
                f"deployed {name}: {store.label}/{name} ({len(data)} bytes, file id {fileid})"
            )
        else:
            click.echo(f"unchanged {name}: {store.label}/{name} (file id {fileid})")
