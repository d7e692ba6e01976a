"""The result as its Colonies output element, encoded in the child (docs/protocol.md, Results).

Each case runs in a real sandbox child with ``element=True``: the bytes the executor splices
into its close message, exactly, and what the reading rule makes of them again.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from faas_sandbox import Sandbox
from faas_sandbox.colonies.spec import decode_result
from faas_sandbox.element import Element, well_formed
from faas_sandbox.engine.outcome import ErrorKind

from .conftest import FAST_POLICY


def run(engine: Sandbox, body: str, **kw):
    source = "def f():\n" + "".join(f"    {line}\n" for line in body.splitlines())
    return engine.call(source, "f", element=True, **kw)


CASES = [
    ("return 69.8", b"69.8", 69.8),
    ("return (21 * 9/5) + 32", b"69.8", 69.8),  # the tutorial's convert(21)
    ("return 7", b"7", 7),
    ("return -2**53", b"-9007199254740992", -(2**53)),
    ("return 2**53 + 1", b'"9007199254740993"', 2**53 + 1),  # past float64: its digits
    ("return 1e300", b"1e+300", 1e300),
    ('return "hello"', b'"hello"', "hello"),
    ('return "caf\\u00e9 \\u2603"', '"café ☃"'.encode(), "café ☃"),  # raw UTF-8
    ('return "21"', b'"\\"21\\""', "21"),  # a string that is JSON text: JSON-encoded
    ('return "[1]"', b'"\\"[1]\\""', "[1]"),
    ('return "true"', b'"\\"true\\""', "true"),
    ('return "NaN"', b'"\\"NaN\\""', "NaN"),
    ('return "a\\x00b"', b'"a\\u0000b"', "a\x00b"),  # the server keeps a NUL in out
    ("return True", b'"true"', True),
    ("return None", b'"null"', None),
    ("return [1, 2]", b'"[1,2]"', [1, 2]),
    ("return (1, 'x')", b'"[1,\\"x\\"]"', [1, "x"]),
    ('return {"a": [1, {"b": None}]}', b'"{\\"a\\":[1,{\\"b\\":null}]}"', {"a": [1, {"b": None}]}),
    ('return ["\\ud800"]', b'"[\\"\\\\ud800\\"]"', ["\ud800"]),  # escape inside JSON text
    ('return "[\\"\\ud800\\"]"', b'"\\"[\\\\\\"\\\\ud800\\\\\\"]\\""', '["\ud800"]'),
]


@pytest.mark.parametrize(("body", "element", "value"), CASES, ids=[c[0] for c in CASES])
def test_each_result_form_is_one_element(engine, body, element, value):
    out = run(engine, body)
    assert out.ok, out
    assert out.element == element
    assert isinstance(out.element, Element) and well_formed(out.element)
    assert decode_result(json.loads(element)) == value  # the reading rule gets it back


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('return "bad \\ud800 text"', "lone surrogate"),
        ('return float("nan")', "not JSON-serialisable"),
        ('return [1, {"x": float("inf")}]', "not JSON-serialisable"),
        ("return 10**5000", "not JSON-serialisable"),  # past int's 4300-digit text limit
        ("x = []\nfor _ in range(300):\n    x = [x]\nreturn x", "nests deeper"),
        ("x = []\nx.append(x)\nreturn x", "Circular reference"),
        ("return object()", "not JSON-serialisable"),
    ],
)
def test_results_without_an_element_fail_output_with_a_reason(engine, body, reason):
    out = run(engine, body)
    assert not out.ok and out.error_kind is ErrorKind.OUTPUT, out
    assert reason in out.message


HOSTILE = """
calls = []
class Fickle(dict):
    def items(self):
        calls.append(1)
        return [("a", "\\ud800")] if len(calls) == 1 else [("b", 2)]
class Raising(dict):
    def items(self):
        raise RuntimeError("hook")
class S(str):
    def startswith(self, *a):
        raise RuntimeError("hook")
    def strip(self, *a):
        raise RuntimeError("hook")
class I(int):
    def bit_length(self):
        raise RuntimeError("hook")
class F(float):
    pass
def f(which):
    made = {"fickle": lambda: Fickle(x=1), "str": lambda: S("[1]"), "plain": lambda: S("ab"),
            "int": lambda: I(2**60), "float": lambda: F(0.5), "deepstr": lambda: "[" * 30000,
            "raising": lambda: Raising(x=1), "nested": lambda: [[S("21"), I(3)], Fickle(x=1)]}
    return made[which]()
"""


@pytest.mark.parametrize(
    ("which", "element"),
    [
        ("fickle", b'"{\\"a\\":\\"\\\\ud800\\"}"'),  # encoded once: the first answer
        ("str", b'"\\"[1]\\""'),  # str subclass methods never run
        ("plain", b'"ab"'),
        ("int", b'"1152921504606846976"'),  # int subclass: its digits
        ("float", b"0.5"),
        ("deepstr", b'"\\"' + b"[" * 30000 + b'\\""'),  # too deep to parse: quoted, never raw
        ("nested", b'"[[\\"21\\",3],{\\"a\\":\\"\\\\ud800\\"}]"'),
    ],
)
def test_hostile_results_get_the_element_of_what_was_encoded(engine, which, element):
    out = engine.call(HOSTILE, "f", [which], element=True)
    assert out.ok, out
    assert out.element == element


def test_a_result_hook_that_raises_is_runtime_not_crash(engine):
    out = engine.call(HOSTILE, "f", ["raising"], element=True)
    assert (out.error_kind, out.message) == (ErrorKind.RUNTIME, "RuntimeError: hook")


def test_the_element_is_capped_at_max_result_bytes(make_sandbox):
    limits = dataclasses.replace(FAST_POLICY.limits, max_result_bytes=1000)
    sb = make_sandbox(dataclasses.replace(FAST_POLICY, limits=limits))
    # 400 quotes: 402 bytes of JSON, but its element escapes each quote: over 1000
    out = sb.call('def f():\n    return ["\\"" * 200, "\\"" * 200]\n', "f", element=True)
    assert not out.ok and out.error_kind is ErrorKind.OUTPUT
    assert "over the limit of 1000 (max_result_bytes)" in out.message
    assert sb.call('def f():\n    return ["\\"" * 200, "\\"" * 200]\n', "f").ok  # plain JSON fits


def test_without_element_the_value_json_is_unchanged(engine):
    out = engine.call("def f():\n    return [69.8, 'x']\n", "f")
    assert out.ok and out.value_json == b'[69.8,"x"]' and out.value == [69.8, "x"]
