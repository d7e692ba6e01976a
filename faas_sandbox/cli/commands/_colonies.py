"""Shared plumbing for the commands that talk to Colonies (call, functions, logs, status, http).

Settings come from the COLONIES_* environment (Settings.from_env) and requests are signed with
COLONIES_PRVKEY, a member key. Faults become one line on stderr and an exit status: 2 bad or
missing settings, 3 Colonies unreachable, 1 the server refused (or answered what we cannot
read): the front end's reading of a failed request (``colonies.faults``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from ...colonies.faults import fault
from ...errors import ColoniesError, PolicyError, SettingsError
from ...kinds import ErrorKind
from ...policy import Policy
from ..dispatch import EXIT_FAILED, EXIT_UNREACHABLE, usage_error

if TYPE_CHECKING:
    from ...colonies.client import ColoniesClient


def fail(message: str, status: int = EXIT_FAILED) -> None:
    """Print ``faas-sandbox: MESSAGE`` on stderr and exit with ``status``."""
    click.echo(f"faas-sandbox: {message}", err=True)
    sys.exit(status)


def load_policy(path: str | None) -> Policy:
    """The policy at ``path`` (or the built-in default, as the executor uses); exit 2 if bad."""
    try:
        return Policy.load(path) if path else Policy()
    except PolicyError as exc:
        usage_error(str(exc))
        raise  # unreachable: usage_error exits


def connect() -> ColoniesClient:
    """A client for COLONIES_COLONY_NAME signing with COLONIES_PRVKEY; exit 2 if unset."""
    from ...colonies.client import ColoniesClient
    from ...settings import Settings

    try:
        settings = Settings.from_env(os.environ)
        prvkey = settings.require_prvkey()
    except SettingsError as exc:
        usage_error(str(exc))
        raise  # unreachable
    return ColoniesClient.connect(
        settings.host, settings.port, settings.tls, settings.colony_name, prvkey
    )


@contextmanager
def colonies_errors(what: str) -> Iterator[None]:
    """Turn Colonies faults inside the block into one line and exit 3 (unreachable) or 1."""
    try:
        yield
    except ColoniesError as exc:
        kind, message = fault(exc, what)
        fail(
            f"error: {message}", EXIT_UNREACHABLE if kind is ErrorKind.UNREACHABLE else EXIT_FAILED
        )
