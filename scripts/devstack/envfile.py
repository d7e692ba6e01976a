"""Sourceable ``export KEY=value`` files: read, and write atomically with mode 0600."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path


def read(path: Path) -> dict[str, str]:
    """Parse lines like ``export KEY=value`` (comments and blank lines ignored)."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :]
        key, sep, rest = line.partition("=")
        if not sep:
            continue
        parts = shlex.split(rest) if rest.strip() else [""]
        values[key.strip()] = parts[0] if parts else ""
    return values


def render(values: Mapping[str, str], header: str) -> str:
    lines = [f"# {line}" for line in header.splitlines()]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write(path: Path, values: Mapping[str, str], header: str) -> bool:
    """Write (0600) only when the content changed; return True when it did."""
    text = render(values, header)
    if path.exists() and path.read_text() == text:
        os.chmod(path, 0o600)
        return False
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
    return True
