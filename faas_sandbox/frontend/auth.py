"""Bearer tokens: a file of salted hashes, per-function grants and a per-token rate limit.

The tokens file (JSON, written mode 0600 by ``faas-sandbox token add``)::

    {"version": 1, "tokens": [{"name": "ci", "salt": "<hex>", "sha256": "<hex>",
                               "functions": ["convert", "stats*"], "created": "<RFC 3339>"}]}

A token is ``fst_`` + 43 random URL-safe characters (256 bits), shown once when it is made;
the file keeps only ``sha256(salt || token)``, so reading the file gives no token. Grants are
shell patterns on function names (``*`` = every function). The front end re-reads the file
when it changes, so ``token add``/``token rm`` take effect without a restart.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "fst_"
MAX_TOKEN_CHARS = 256
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PATTERN = re.compile(r"^[A-Za-z0-9_*?\[\]!-]{1,128}$")


class TokenFileError(Exception):
    """The tokens file or a token command's argument is invalid (message says which)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One token's entry: its name and what it may call."""

    name: str
    salt: str
    sha256: str
    functions: tuple[str, ...]
    created: str = ""

    def allows(self, function: str) -> bool:
        return any(fnmatch.fnmatchcase(function, p) for p in self.functions)

    def matches(self, token: str) -> bool:
        digest = hashlib.sha256(bytes.fromhex(self.salt) + token.encode()).hexdigest()
        return hmac.compare_digest(digest, self.sha256)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "salt": self.salt,
            "sha256": self.sha256,
            "functions": list(self.functions),
            "created": self.created,
        }


def parse_patterns(text: str) -> tuple[str, ...]:
    """``'convert,stats*'`` -> ("convert", "stats*"); TokenFileError if any is malformed."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise TokenFileError("--functions: give at least one name or pattern")
    for p in patterns:
        if not _PATTERN.match(p):
            raise TokenFileError(f"--functions: {p[:80]!r} is not a function name or pattern")
    return patterns


def load(path: str | Path) -> list[Grant]:
    """The grants in ``path``; an absent file is an empty list. TokenFileError if malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise TokenFileError(f"{path}: cannot read tokens file: {exc}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TokenFileError(f'{path}: expected an object with a "tokens" list')
    grants = []
    for i, entry in enumerate(entries):
        try:
            grant = Grant(
                str(entry["name"]),
                str(entry["salt"]),
                str(entry["sha256"]),
                tuple(str(p) for p in entry["functions"]),
                str(entry.get("created", "")),
            )
            bytes.fromhex(grant.salt)
        except (KeyError, TypeError, ValueError):
            raise TokenFileError(
                f"{path}: tokens[{i}]: needs name, salt (hex), sha256 and a functions list"
            ) from None
        grants.append(grant)
    return grants


def save(path: str | Path, grants: Iterable[Grant]) -> None:
    """Write atomically, mode 0600."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = json.dumps({"version": 1, "tokens": [g.to_json() for g in grants]}, indent=2)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(data + "\n")
    os.replace(tmp, path)


def add(path: str | Path, name: str, functions: tuple[str, ...]) -> str:
    """Add token ``name`` granted ``functions``; return the token (the only time it exists)."""
    if not _NAME.match(name):
        raise TokenFileError(f"token name {name[:80]!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    grants = load(path)
    if any(g.name == name for g in grants):
        raise TokenFileError(f"a token named {name!r} exists; remove it first")
    token = PREFIX + secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    digest = hashlib.sha256(salt + token.encode()).hexdigest()
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    save(path, [*grants, Grant(name, salt.hex(), digest, functions, created)])
    return token


def remove(path: str | Path, name: str) -> None:
    grants = load(path)
    kept = [g for g in grants if g.name != name]
    if len(kept) == len(grants):
        raise TokenFileError(f"no token named {name[:80]!r}")
    save(path, kept)


class TokenStore:
    """The grants of a tokens file, re-read when the file changes (checked at most once a s)."""

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._grants = load(self.path)
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def grants(self) -> list[Grant]:
        now = self._clock()
        if now - self._checked >= 1.0:
            with self._lock:
                self._checked = now
                stamp = self._stat()
                if stamp != self._stamp:
                    try:
                        self._grants = load(self.path)
                        self._stamp = stamp
                        log.info(
                            "tokens file %s re-read: %d token(s)", self.path, len(self._grants)
                        )
                    except TokenFileError as exc:
                        log.warning("%s; keeping the previous tokens", exc)
        return self._grants

    def find(self, token: str) -> Grant | None:
        if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
            return None
        for grant in self.grants():
            if grant.matches(token):
                return grant
        return None


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts of ``burst``."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if the request may go, else the seconds until it may (for Retry-After)."""
        now = self._clock()
        level, last = self._buckets.get(key, (float(self.burst), now))
        level = min(float(self.burst), level + (now - last) * self.rate)
        if level >= 1.0:
            self._buckets[key] = (level - 1.0, now)
            return 0.0
        self._buckets[key] = (level, now)
        return (1.0 - level) / self.rate
