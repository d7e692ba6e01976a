"""The size rules of a call, each defined once: how a function's source and a call's arguments
are measured, and what a caller is told when they are over the policy's limit.

Checked where the bytes enter: the HTTP front end (arguments, answered 413), ``faas-sandbox
deploy`` (source, per function), and the engine's entry, ``Sandbox.call`` (both, for every
caller, the executor included). Coarser bounds that only cap reading or parsing before the
function is known (a spec's argument text, a source download) use :meth:`Policy.ceiling
<faas_sandbox.policy.Policy.ceiling>`, the largest limit any function has.

Standard library only: every layer may import it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def args_json(args: Iterable[Any], kwargs: Mapping[str, Any] | None) -> bytes:
    """The measure of ``max_args_bytes``: ``[args, kwargs]`` as compact UTF-8 JSON, the bytes the
    sandbox child decodes. TypeError/ValueError/RecursionError for what JSON cannot carry."""
    value = [list(args), dict(kwargs or {})]
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the escaped form is the same JSON value
        return json.dumps(value, allow_nan=False, separators=(",", ":")).encode("ascii")


def source_over(size: int, limit: int) -> str | None:
    """Why a source of ``size`` UTF-8 bytes is refused under ``max_source_bytes`` = ``limit``,
    or None if it is not."""
    if size <= limit:
        return None
    return f"source is {size} bytes, over the limit of {limit} (max_source_bytes)"


def args_over(size: int, limit: int) -> str | None:
    """Why arguments of ``size`` bytes (:func:`args_json`) are refused under ``max_args_bytes``
    = ``limit``, or None if they are not."""
    if size <= limit:
        return None
    return f"arguments are {size} bytes of JSON, over the limit of {limit} (max_args_bytes)"
