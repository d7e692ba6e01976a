"""``faas-sandbox token add|list|rm``: the bearer tokens file of ``faas-sandbox http --tokens``.

``token add NAME --functions 'convert,stats*' --tokens PATH`` prints the new token, alone, on
stdout: the only time it is ever shown (the file keeps a salted hash). Exit status: 0 ok,
2 usage (bad name, pattern, unreadable file, unknown token).
"""

from __future__ import annotations

import click

from ..dispatch import usage_error

TOKENS_OPTION = click.option(
    "--tokens",
    "path",
    required=True,
    metavar="PATH",
    help="The tokens file (created mode 0600 if missing).",
)


@click.group("token")
def token_group() -> None:
    """Manage the bearer tokens the HTTP front end accepts."""


@token_group.command("add")
@click.argument("name")
@click.option(
    "--functions",
    "patterns",
    required=True,
    metavar="LIST",
    help="Comma-separated function names or patterns, e.g. 'convert,stats*' or '*'.",
)
@TOKENS_OPTION
def add(name: str, patterns: str, path: str) -> None:
    """Make token NAME for the functions in LIST; print it once."""
    from ...frontend.auth import TokenFileError, parse_patterns
    from ...frontend.auth import add as add_token

    try:
        token = add_token(path, name, parse_patterns(patterns))
    except (TokenFileError, OSError) as exc:
        usage_error(str(exc))
    click.echo(token)


@token_group.command("list")
@TOKENS_OPTION
def list_tokens(path: str) -> None:
    """List the tokens' names, grants and creation times (never the tokens)."""
    from ...frontend.auth import TokenFileError, load

    try:
        grants = load(path)
    except TokenFileError as exc:
        usage_error(str(exc))
    for g in grants:
        click.echo(f"{g.name}\t{','.join(g.functions)}\t{g.created}")


@token_group.command("rm")
@click.argument("name")
@TOKENS_OPTION
def remove(name: str, path: str) -> None:
    """Remove token NAME (the front end stops accepting it within a second)."""
    from ...frontend.auth import TokenFileError
    from ...frontend.auth import remove as remove_token

    try:
        remove_token(path, name)
    except (TokenFileError, OSError) as exc:
        usage_error(str(exc))
    click.echo(f"removed token {name}")
