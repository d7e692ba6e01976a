"""What a Colonies process asks for, and how values travel in and out (docs/protocol.md).

Three spec forms are served, checked in this order:

1. Inline code (the tutorial's "Option 3", as ``pycolonies.func_spec(func=<callable>)`` writes
   it): base64 source in ``env["code"]`` (``spec.env``, or a process attribute of type 3),
   ``funcname`` = the function's own name, ``spec.args`` positional, ``spec.kwargs`` keyword
   arguments, both passed as they are.
2. ``funcname == "execute"``: code from ColonyFS ``/faas/<kwargs.function>``, with arguments
   - ``kwargs.arg``: the tutorial's single argument, passed as ``float(arg)``; or
   - ``kwargs.args``: JSON text of an array (positional) and/or ``kwargs.kwargs``: JSON text of
     an object (keyword); kwargs values are strings in Colonies, hence JSON text; or
   - ``spec.args``: a list, passed positionally (pycolonies allows only str and int there).
3. Anything else is a :class:`SpecError` with a reason the submitter can act on.

Results go out so that pycolonies' ``Process`` model (strings and numbers only in ``out``) can
read them: int and float raw, str raw, everything else as JSON text (the rule lives in
:mod:`faas_sandbox.element`; :func:`encode_result`, :func:`decode_result`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import element
from ..errors import SpecError
from ..names import FunctionName, function_name, is_sha256, keyword_name
from ..policy import MAX_WALL_SECONDS, MIN_WALL_SECONDS, Limits
from .reply import MAX_DEPTH, DecodeError, loads

EXECUTE = "execute"  # the one function a faas executor registers (tutorial)
ENV_ATTRIBUTE = 3  # Colonies attribute type of spec.env entries
EXECUTE_KEYS = frozenset({"function", "arg", "args", "kwargs", "revision", "sha256", "wall"})
_FILEID = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True, slots=True)
class Call:
    """One call a process asks for."""

    processid: str
    function: FunctionName
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # inline code; None means ColonyFS /faas/<function>
    maxexectime: int | None = None  # seconds; None means the policy default
    form: str = "json"  # "tutorial", "json" or "inline", for logs
    revision: tuple[str, str] | None = None  # pinned (file id, sha256); None: the latest
    wall: float | None = None  # seconds the submitter asked for (kwargs.wall); None: policy's


# Default cap on kwargs.args/kwargs.kwargs text before parsing: the default policy's limit (an
# executor passes its policy's ceiling; the engine applies each function's own limit).
MAX_ARGS_TEXT_BYTES = Limits().max_args_bytes


def parse_process(process: Mapping[str, Any], max_args_bytes: int = MAX_ARGS_TEXT_BYTES) -> Call:
    """The call a process (assign reply, as JSON) asks for; SpecError says why not.

    JSON text in ``kwargs.args``/``kwargs.kwargs`` is size-checked (``max_args_bytes``) and
    depth-checked before it is parsed."""
    processid = process.get("processid")
    if not isinstance(processid, str) or not processid:
        raise SpecError("process has no processid")
    spec = process.get("spec")
    if not isinstance(spec, Mapping):
        raise SpecError("process has no spec")
    funcname = spec.get("funcname")
    if not isinstance(funcname, str) or not funcname:
        raise SpecError("spec.funcname is missing")
    args = spec.get("args") or []
    if not isinstance(args, list):
        raise SpecError(f"spec.args must be a list, got {type(args).__name__}")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise SpecError(f"spec.kwargs must be an object, got {type(kwargs).__name__}")
    maxexectime = _maxexectime(spec.get("maxexectime"))

    code = _env_code(spec, process.get("attributes"))
    if code is not None:
        return Call(
            processid,
            function_name(funcname),
            tuple(args),
            _keywords(kwargs),
            _decode_code(code),
            maxexectime,
            "inline",
        )
    if funcname != EXECUTE:
        raise SpecError(
            f'unknown funcname {funcname!r}: use funcname "execute" with '
            f"kwargs.function, or inline code in env.code"
        )
    unknown = sorted(set(kwargs) - EXECUTE_KEYS)
    if unknown:
        raise SpecError(f"unknown kwargs {unknown}; expected some of {sorted(EXECUTE_KEYS)}")
    if "function" not in kwargs:
        raise SpecError("kwargs.function is missing: name the function to call")
    function = function_name(kwargs["function"])
    revision = _revision(kwargs)
    if "arg" in kwargs:
        if "args" in kwargs or "kwargs" in kwargs or args:
            raise SpecError("kwargs.arg cannot be combined with args or kwargs")
        return Call(
            processid,
            function,
            (_tutorial_arg(kwargs["arg"]),),
            {},
            None,
            maxexectime,
            "tutorial",
            revision,
            _wall(kwargs),
        )
    positional: list[Any] = list(args)
    if "args" in kwargs:
        if args:
            raise SpecError("give positional arguments in spec.args or kwargs.args, not both")
        positional = _json_value(kwargs["args"], list, "kwargs.args", "an array", max_args_bytes)
    keywords = _json_value(
        kwargs.get("kwargs", "{}"), dict, "kwargs.kwargs", "an object", max_args_bytes
    )
    return Call(
        processid,
        function,
        tuple(positional),
        _keywords(keywords),
        None,
        maxexectime,
        "json",
        revision,
        _wall(kwargs),
    )


def _wall(kwargs: Mapping[str, Any]) -> float | None:
    """kwargs.wall: the wall-clock limit the submitter asked for, in seconds (number or text).

    Colonies' maxexectime is whole seconds and must leave room to close the call, so a
    submitter that wants exactly 1 s sets maxexectime 2 and wall "1"."""
    if "wall" not in kwargs:
        return None
    value = kwargs["wall"]
    try:
        wall = (
            float(value)
            if isinstance(value, (str, int, float))
            and not isinstance(value, bool)
            and len(str(value)) <= 32
            else math.nan
        )
    except ValueError:
        wall = math.nan
    if not MIN_WALL_SECONDS <= wall <= MAX_WALL_SECONDS:  # NaN fails this too
        raise SpecError(
            f"kwargs.wall must be seconds from {MIN_WALL_SECONDS:g} to "
            f"{MAX_WALL_SECONDS:g}, "
            f"got {str(value)[:40]!r}"
        )
    return wall


def _revision(kwargs: Mapping[str, Any]) -> tuple[str, str] | None:
    """kwargs.revision (a ColonyFS file id) and kwargs.sha256 pin the code to run, together."""
    if "revision" not in kwargs and "sha256" not in kwargs:
        return None
    fileid, sha = kwargs.get("revision"), kwargs.get("sha256")
    if not isinstance(fileid, str) or not _FILEID.fullmatch(fileid):
        raise SpecError("kwargs.revision must be a ColonyFS file id (with kwargs.sha256)")
    if not isinstance(sha, str) or not is_sha256(sha):
        raise SpecError("kwargs.sha256 must be 64 hex digits (with kwargs.revision)")
    return fileid, sha.lower()


def encode_call_kwargs(
    function: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The ``spec.kwargs`` that ask ``execute`` to call ``function(*args, **kwargs)``.

    ``function`` is not checked here: the executor checks every spec it decodes."""
    out: dict[str, str] = {"function": function}
    if args:
        out["args"] = json.dumps(list(args), allow_nan=False, separators=(",", ":"))
    if kwargs:
        out["kwargs"] = json.dumps(dict(kwargs), allow_nan=False, separators=(",", ":"))
    return out


def encode_result(value: Any) -> str | int | float:
    """One ``out`` element for a value in this process, by the one encoding rule
    (:mod:`faas_sandbox.element`; the executor sends what the sandbox child encoded).
    ValueError for what has no element (NaN, infinities, a plain string with a lone
    surrogate)."""
    return json.loads(element.of_value(value))  # type: ignore[no-any-return]


def decode_result(item: Any) -> Any:
    """Undo :func:`encode_result`: a string that parses as JSON is that JSON, else itself.

    Non-finite floats (sent as ``"NaN"``/``"Infinity"``) stay text, since JSON cannot carry them.
    """
    return element.read(item)


def _maxexectime(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value) if value > 0 else None  # 0 and -1: the policy default


def _env_code(spec: Mapping[str, Any], attributes: Any) -> Any:
    env = spec.get("env")
    if isinstance(env, Mapping) and env.get("code"):
        return env["code"]
    if isinstance(attributes, list):
        for attr in attributes:
            if (
                isinstance(attr, Mapping)
                and attr.get("attributetype") == ENV_ATTRIBUTE
                and attr.get("key") == "code"
                and attr.get("value")
            ):
                return attr["value"]
    return None


def _decode_code(code: Any) -> str:
    if not isinstance(code, str):
        raise SpecError("env.code must be base64 text")
    try:
        raw = base64.b64decode(code, validate=True)
        return textwrap.dedent(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise SpecError("env.code is not valid base64 of UTF-8 source") from None


def _tutorial_arg(arg: Any) -> float:
    if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
        raise SpecError(f"kwargs.arg must be a number written as text, got {type(arg).__name__}")
    try:
        value = float(arg)
    except (ValueError, OverflowError):
        raise SpecError(f"kwargs.arg is not a number: {str(arg)[:80]!r}") from None
    if not math.isfinite(value):
        raise SpecError(f"kwargs.arg must be a finite number, got {str(arg)[:80]!r}")
    return value


def _json_value(text: Any, kind: type, where: str, what: str, max_bytes: int) -> Any:
    if isinstance(text, kind):  # a Go or raw-HTTP client may send real JSON, not text
        return text
    if not isinstance(text, str):
        raise SpecError(f"{where} must be JSON text of {what}, got {type(text).__name__}")
    if len(text) > max_bytes:  # characters <= bytes: a cheap first cut before encoding
        raise SpecError(f"{where} is over the limit of {max_bytes} bytes (max_args_bytes)")
    try:
        value = loads(text, max_bytes=max_bytes, max_depth=MAX_DEPTH)
    except DecodeError as exc:
        raise SpecError(f"{where} is {exc}") from None
    if not isinstance(value, kind):
        raise SpecError(f"{where} must be JSON text of {what}, got {type(value).__name__}")
    return value


def _keywords(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    for key in kwargs:
        keyword_name(key)  # the one rule (names.py), as the HTTP front end applies it
    return dict(kwargs)
