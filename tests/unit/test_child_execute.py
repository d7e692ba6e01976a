"""child.execute run in-process (no fork, benign code only): compile -> exec -> call ->
classify -> frame, exactly as a child does it after its limits are applied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faas_sandbox.engine import child, guards, wire
from faas_sandbox.policy import Limits
from faas_sandbox.engine.process import parse_result

LIMITS = {name: getattr(Limits(), name) for name in Limits.__dataclass_fields__}


def run(source: str, function: str = "f", args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None, **limits: Any) -> dict[str, Any]:
    compiled = guards.compile_source(source)
    assert compiled.code is not None, compiled.errors
    request = {"sha": "s", "function": function, "modules": ["math"],
               "args": json.dumps([args or [], kwargs or {}]), "limits": {**LIMITS, **limits}}
    data = child.execute(request, {"s": compiled.code}.get, [b""])
    frame, error = parse_result(data)
    assert error is None, error
    assert frame is not None
    return frame


def test_ok_frame_carries_value_and_stdout() -> None:
    frame = run("import math\ndef f(x, y=1):\n    print('r', x)\n    return math.sqrt(x) * y\n",
                args=[16], kwargs={"y": 2})
    assert frame == {"ok": True, "stdout": "r 16\n", "value": 8.0}


def test_exception_becomes_type_and_text() -> None:
    frame = run("def f():\n    raise KeyError('k')\n")
    assert (frame["ok"], frame["kind"], frame["message"]) == (False, "runtime", "KeyError: 'k'")


def test_exception_with_a_hostile_str_is_still_described() -> None:
    class Hostile(Exception):  # restricted code cannot define __str__; the guard is general
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert child._describe(Hostile()) == "Hostile: <unprintable exception>"
    assert child._describe(ValueError()) == "ValueError"


def test_long_messages_are_truncated() -> None:
    frame = run("def f():\n    raise ValueError('x' * 10000)\n")
    assert len(frame["message"]) == child.MAX_MESSAGE_CHARS + 3


def test_missing_function() -> None:
    assert run("def g():\n    pass\n")["message"] == "NameError: source defines no function 'f'"


def test_undecodable_args_are_runtime() -> None:
    request = {"sha": "s", "function": "f", "modules": [], "args": "[1", "limits": LIMITS}
    code = guards.compile_source("def f():\n    pass\n").code
    frame, _ = parse_result(child.execute(request, {"s": code}.get, [b""]))
    assert frame is not None and frame["kind"] == "runtime"
    assert frame["message"].startswith("ValueError: arguments could not be decoded")


def test_caught_guard_violation_is_still_forbidden() -> None:
    source = ("def f():\n    try:\n        import os\n    except:\n        pass\n"
              "    return 1\n")
    frame = run(source)
    assert (frame["kind"], frame["message"]) == ("forbidden",
                                                 "import of 'os' is not allowed by the policy")


def test_caught_stdout_overflow_is_still_output() -> None:
    source = ("def f():\n    for i in range(10):\n        try:\n            print('x' * 100)\n"
              "        except:\n            pass\n    return 1\n")
    frame = run(source, max_stdout_bytes=250)
    assert frame["kind"] == "output" and len(frame["stdout"]) == 250


@pytest.mark.parametrize(("body", "fragment"), [
    ("return {1.5: 2}", "not JSON-serialisable"),  # float keys are allowed by json ...
    ("return set()", "not JSON-serialisable"),
    ("return 'x' * 100", "over the limit of 50 (max_result_bytes)"),
])
def test_unsendable_results(body: str, fragment: str) -> None:
    frame = run(f"def f():\n    {body}\n", max_result_bytes=50)
    if body.startswith("return {1.5"):  # ... and become "1.5": json's own rule
        assert frame == {"ok": True, "stdout": "", "value": {"1.5": 2}}
        return
    assert frame["kind"] == "output" and fragment in frame["message"]


def test_result_depth_limit_restores_the_recursion_limit() -> None:
    import sys

    before = sys.getrecursionlimit()
    with pytest.raises(child._ResultRefused, match="nests deeper"):
        child.encode_result(_nest(child.MAX_RESULT_DEPTH + 15), 1 << 20)
    assert child.encode_result(_nest(child.MAX_RESULT_DEPTH), 1 << 20).startswith(b"[[")
    assert sys.getrecursionlimit() == before


def test_missing_code_object_is_an_engine_error_not_a_user_error() -> None:
    request = {"sha": "gone", "function": "f", "modules": [], "args": "[[],{}]",
               "limits": LIMITS}
    with pytest.raises(LookupError):
        child.execute(request, {}.get, [b""])


def test_frames_are_complete_wire_frames() -> None:
    data = child.execute(
        {"sha": "s", "function": "f", "modules": [], "args": "[[],{}]", "limits": LIMITS},
        {"s": guards.compile_source("def f():\n    return [1]\n").code}.get, [b""])
    assert wire.HEADER.unpack_from(data)[0] == len(data) - 4


def _nest(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value
