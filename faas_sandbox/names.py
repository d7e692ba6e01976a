"""The identifier rules, each defined once, and the types that say a value passed them.

A name from outside (an HTTP path, a CLI argument, a Colonies spec) is checked once, where it
enters, by :func:`function_name` or :func:`processid` (a content digest by :func:`is_sha256`, a
keyword argument's name by :func:`keyword_name`);
inside, the types :data:`FunctionName` and :data:`ProcessId` say it was checked, and nothing
checks it again. The HTTP front end hands the same patterns to FastAPI, so its OpenAPI schema
shows the rule it applies.

Standard library only: every layer (engine, Colonies, executor, front end, CLI) may import it.
"""

from __future__ import annotations

import re
from typing import NewType

from .errors import SpecError

FunctionName = NewType("FunctionName", str)
"""A function name that passed :func:`function_name`: safe as a ColonyFS file name."""

ProcessId = NewType("ProcessId", str)
"""A Colonies process id that passed :func:`processid`."""

# A plain ASCII identifier: no path characters, so it can name a ColonyFS file in /faas.
FUNCTION_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
FUNCTION_NAME_RULE = "[A-Za-z_][A-Za-z0-9_]*, at most 128 characters"
# A keyword argument's name: a plain ASCII identifier as well, of any length (the arguments'
# size limit bounds it). Not any str.isidentifier(): Python folds a non-ASCII name in source
# to NFKC (a parameter spelled with the ligature U+FB01 is named "fi"), so a non-ASCII key
# could miss the very parameter it means.
KEYWORD_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
KEYWORD_RULE = "[A-Za-z_][A-Za-z0-9_]*"
PROCESSID_PATTERN = r"^[0-9a-f]{64}$"  # the server's ids: 64 lowercase hex digits
SHA256_PATTERN = r"^[0-9a-fA-F]{64}$"  # a SHA-256 digest in hex (ColonyFS checksums, pins)

_FUNCTION_NAME = re.compile(FUNCTION_NAME_PATTERN)
_KEYWORD = re.compile(KEYWORD_PATTERN)
_PROCESSID = re.compile(PROCESSID_PATTERN)
_SHA256 = re.compile(SHA256_PATTERN)


def function_name(value: object) -> FunctionName:
    """``value`` as a :data:`FunctionName` if it is a plain ASCII identifier of at most 128
    characters; else SpecError saying so."""
    if not isinstance(value, str) or not _FUNCTION_NAME.fullmatch(value):
        shown = repr(value)[:80]
        raise SpecError(
            f"invalid function name {shown}: expected an identifier ({FUNCTION_NAME_RULE})"
        )
    return FunctionName(value)


def keyword_name(value: object) -> str:
    """``value`` if it is a plain ASCII identifier (a keyword argument's name); else SpecError
    saying so."""
    if not isinstance(value, str) or not _KEYWORD.fullmatch(value):
        shown = repr(value[:80] if isinstance(value, str) else value)[:90]
        raise SpecError(
            f"keyword argument name {shown} is not an identifier ({KEYWORD_RULE}, ASCII)"
        )
    return value


def processid(value: object) -> ProcessId:
    """``value`` as a :data:`ProcessId` if it is 64 lowercase hex digits; else SpecError."""
    if not isinstance(value, str) or not _PROCESSID.fullmatch(value):
        shown = repr(value[:80] if isinstance(value, str) else value)[:90]
        raise SpecError(f"expected 64 hex digits, got {shown}")
    return ProcessId(value)


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a SHA-256 digest written as 64 hex digits (either case)."""
    return isinstance(value, str) and _SHA256.fullmatch(value) is not None
