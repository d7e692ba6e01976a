"""The local development stack's settings, for a CLI run from a source checkout.

``scripts/stack.sh up`` (run by ``make run`` and ``make test``) writes the client settings of
the stack it started to ``.dev/stack.env`` in the checkout (``export KEY=value`` lines, mode
0600). When the environment holds no ``COLONIES_*`` variable at all, the CLI reads that file,
so ``faas-sandbox call convert 21`` works right after ``make run`` without ``source``-ing it.
A shell that sets any ``COLONIES_*`` variable is taken as configured and the file is ignored
(settings are never mixed from two places).

``FAAS_SANDBOX_STACK_ENV`` overrides the lookup: a path names another file, ``none`` turns
the lookup off. The file is used only when it is a regular file owned by the current user
and not writable by group or others; otherwise it is ignored.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import MutableMapping
from pathlib import Path

OVERRIDE = "FAAS_SANDBOX_STACK_ENV"
ALLOWED_PREFIXES = ("COLONIES_", "AWS_S3_")


def checkout_env_file() -> Path | None:
    """``.dev/stack.env`` of the checkout this package runs from, if it is one."""
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / "pyproject.toml").is_file():
        return None  # an installed package, not a checkout
    return checkout / ".dev" / "stack.env"


def parse(text: str) -> dict[str, str]:
    """``export KEY=value`` lines (shell quoting); only COLONIES_* and AWS_S3_* keys."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, rest = line.partition("=")
        if not sep or not key.startswith(ALLOWED_PREFIXES) or not key.isidentifier():
            continue
        try:
            parts = shlex.split(rest)
        except ValueError:
            continue
        values[key] = parts[0] if parts else ""
    return values


def _trusted(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    return (
        stat.S_ISREG(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def load_stack_env(environ: MutableMapping[str, str]) -> Path | None:
    """Fill ``environ`` from the stack's env file when it has no COLONIES_* variable.

    Returns the file used, or None when nothing was loaded.
    """
    override = environ.get(OVERRIDE, "").strip()
    if override.lower() == "none":
        return None
    if any(key.startswith("COLONIES_") for key in environ):
        return None
    path = Path(override).expanduser() if override else checkout_env_file()
    if path is None or not _trusted(path):
        return None
    try:
        values = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    for key, value in values.items():
        environ.setdefault(key, value)
    return path if values else None
