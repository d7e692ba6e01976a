"""run.execute in-process (no fork, benign code only): load code -> exec -> call -> encode
once -> RESULT frame, exactly as a child does it after its limits are applied."""

from __future__ import annotations

import json
import marshal
import sys
from typing import Any

import pytest

from faas_sandbox.engine import guards, run, wire
from faas_sandbox.policy import Limits


def execute(
    source: str,
    function: str = "f",
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    code: bool = False,
    **limits: Any,
) -> tuple[wire.Result, list[bytes]]:
    emitted: list[bytes] = []
    if code:
        compiled = guards.compile_source(source)
        assert compiled.code is not None, compiled.errors
        kind, body = wire.CODE_BODY, marshal.dumps(compiled.code)
    else:
        kind, body = wire.SOURCE, source.encode()
    request = wire.Request(
        kind,
        function,
        frozenset({"math"}),
        Limits(**limits),
        body,
        json.dumps([args or [], kwargs or {}]).encode(),
    )
    data = run.execute(request, [b""], emitted.append)
    size, ftype = wire.FRAME.unpack_from(data)
    assert (size, ftype) == (len(data) - 4, wire.RESULT)
    return wire.decode_result(data[wire.FRAME.size :]), emitted


def test_ok_result_carries_value_json_and_stdout() -> None:
    res, emitted = execute(
        "import math\ndef f(x, y=1):\n    print('r', x)\n    return math.sqrt(x) * y\n",
        args=[16],
        kwargs={"y": 2},
    )
    assert (res.kind, res.value, res.stdout, res.message) == ("ok", b"8.0", "r 16\n", "")
    assert res.cpu_s > 0 and res.max_rss_bytes > 0
    # compiled here: the code object went out first, before the function ran
    assert len(emitted) == 1 and wire.FRAME.unpack_from(emitted[0])[1] == wire.CODE


def test_cached_code_is_unmarshalled_and_nothing_is_emitted() -> None:
    res, emitted = execute("def f(x):\n    return [x]\n", args=["é"], code=True)
    assert (res.kind, res.value) == ("ok", '["é"]'.encode()) and emitted == []


def test_compile_errors_are_capped_in_count_and_length() -> None:
    source = "".join(f"_a{i} = 1\n" for i in range(500))  # one error per name
    res, emitted = execute(source)
    assert res.kind == "compile" and emitted == [] and res.flags == 0
    assert res.message.count("Line ") == run.MAX_ERRORS
    assert res.message.endswith(f"... and {500 - run.MAX_ERRORS} more errors")
    assert len(res.message) <= run.MAX_MESSAGE_CHARS + 3


def test_exception_becomes_type_and_text() -> None:
    res, _ = execute("def f():\n    raise KeyError('k')\n")
    assert (res.kind, res.message) == ("runtime", "KeyError: 'k'")


def test_exception_with_a_hostile_str_is_still_described() -> None:
    class Hostile(Exception):  # restricted code cannot define __str__; the guard is general
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert run.describe(Hostile()) == "Hostile: <unprintable exception>"
    assert run.describe(ValueError()) == "ValueError"


def test_long_messages_are_truncated() -> None:
    res, _ = execute("def f():\n    raise ValueError('x' * 10000)\n")
    assert len(res.message) == run.MAX_MESSAGE_CHARS + 3


def test_missing_function() -> None:
    res, _ = execute("def g():\n    pass\n")
    assert res.message == "NameError: source defines no function 'f'"


def test_undecodable_args_are_runtime() -> None:
    request = wire.Request(wire.SOURCE, "f", frozenset(), Limits(), b"def f():\n    pass\n", b"[1")
    res = wire.decode_result(run.execute(request, [b""], lambda b: None)[wire.FRAME.size :])
    assert res.kind == "runtime"
    assert res.message.startswith("ValueError: arguments could not be decoded")


def test_caught_guard_violation_is_still_forbidden() -> None:
    res, _ = execute(
        "def f():\n    try:\n        import os\n    except:\n        pass\n    return 1\n"
    )
    assert (res.kind, res.message) == ("forbidden", "import of 'os' is not allowed by the policy")


def test_caught_stdout_overflow_is_still_output() -> None:
    res, _ = execute(
        "def f():\n    for i in range(10):\n        try:\n"
        "            print('x' * 100)\n        except:\n            pass\n"
        "    return 1\n",
        max_stdout_bytes=250,
    )
    assert res.kind == "output" and len(res.stdout) == 250


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("return set()", "not JSON-serialisable"),
        (
            "return 'x' * 100",
            "result is 102 bytes of JSON, over the limit of 50 (max_result_bytes)",
        ),
    ],
)
def test_unsendable_results(body: str, fragment: str) -> None:
    res, _ = execute(f"def f():\n    {body}\n", max_result_bytes=50)
    assert res.kind == "output" and fragment in res.message


def test_lone_surrogates_are_escaped_in_the_one_encoding() -> None:
    value = {"k": "a\ud800b", "pair": "\ud83d\ude00", "plain": "é"}
    data = run.encode_value(value, 1 << 20)
    assert data == '{"k":"a\\ud800b","pair":"\\ud83d\\ude00","plain":"é"}'.encode()
    assert json.loads(data) == {"k": "a\ud800b", "pair": "😀", "plain": "é"}


def test_result_depth_limit_restores_the_recursion_limit() -> None:
    before = sys.getrecursionlimit()
    with pytest.raises(run._Refused, match="nests deeper"):
        run.encode_value(_nest(run.MAX_RESULT_DEPTH + 15), 1 << 20)
    assert run.encode_value(_nest(run.MAX_RESULT_DEPTH), 1 << 20).startswith(b"[[")
    assert sys.getrecursionlimit() == before


def test_cached_bytes_that_are_not_code_are_a_compile_failure() -> None:
    request = wire.Request(
        wire.CODE_BODY, "f", frozenset(), Limits(), marshal.dumps(42), b"[[],{}]"
    )
    res = wire.decode_result(run.execute(request, [b""], lambda b: None)[wire.FRAME.size :])
    assert (res.kind, res.message) == ("compile", "cached code is not a code object")


def _nest(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def test_prepared_globals_take_the_calls_modules_and_stdout_cap_and_serve_once() -> None:
    prepared = run.Prepared()  # built with no modules and a zero stdout cap, as in the forker
    request = wire.Request(
        wire.SOURCE,
        "f",
        frozenset({"math"}),
        Limits(max_stdout_bytes=3),
        b"import math\ndef f():\n    print('abcdef')\n    return math.pi\n",
        b"[[],{}]",
    )
    res = wire.decode_result(
        run.execute(request, [b""], lambda b: None, prepared=prepared)[wire.FRAME.size :]
    )
    assert (res.kind, res.stdout) == ("output", "abc")  # the call's cap, not the template's
    with pytest.raises(RuntimeError, match="serve one call"):
        prepared.take(request)
    denied = wire.Request(
        wire.SOURCE,
        "f",
        frozenset(),
        Limits(),
        b"def f():\n    import math\n    return 1\n",
        b"[[],{}]",
    )
    res = wire.decode_result(
        run.execute(denied, [b""], lambda b: None, prepared=run.Prepared())[wire.FRAME.size :]
    )
    assert (res.kind, res.message) == ("forbidden", "import of 'math' is not allowed by the policy")
