"""Red team: a function must not be able to make its child die by a signal without a frame.

``crash`` is the engine's kind: the child died without a RESULT frame. CPython 3.11 recurses
in C without any depth check in many places, so pure restricted code could overflow the C
stack and end its call as ``crash`` (SIGSEGV). Each case below did that on 3.11.7 before the
C-stack guard (``engine/_stackguard.c``, armed per phase by ``run.execute``); each now ends
with the frame of the phase it overflowed in. The recursion that CPython does check (through
``Py_EnterRecursiveCall``, within its limit of 1000 on an 8 MiB stack) stays a plain
RecursionError, and a fault that is not a stack overflow (a wild pointer) stays ``crash``
(``test_isolation.test_segfault_is_a_crash_named_by_signal``).

The sandbox here is started under RLIMIT_STACK = 8 MiB (the Linux default; restored right
after its forker starts) so that every kind is exact whatever ``ulimit -s`` the runner has:
children inherit the forker's stack limit. Bombs run under FAST limits (128 MiB) with 3 s of
CPU and 6 s of wall time instead of 1 and 2: the slowest chains here (itertools, 300,000
levels, about 1.7 us each) take ~0.5 s of CPU on the development VM.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from dataclasses import replace

import pytest

from faas_sandbox import ErrorKind, Policy, Sandbox

from .conftest import FAST

STACK_BYTES = 8 << 20
RUNTIME_OVERFLOW = "RecursionError: maximum recursion depth exceeded in C (the C stack overflowed)"
OUTPUT_OVERFLOW = "result nests too deeply to encode (the C stack overflowed)"
MEMORY_OVERFLOW = "memory limit exceeded (the C stack could not grow)"
DEEP = 300_000  # levels; each case below needs far more than 8 MiB of C stack at this depth
LIMIT = "RecursionError: maximum recursion depth exceeded"
CALLING = f"{LIMIT} while calling a Python object"
REPR = f"{LIMIT} while getting the repr of an object"


@pytest.fixture(scope="module")
def stack_8m() -> Iterator[Sandbox]:
    soft, hard = resource.getrlimit(resource.RLIMIT_STACK)
    pinned = STACK_BYTES if hard == resource.RLIM_INFINITY else min(STACK_BYTES, hard)
    resource.setrlimit(resource.RLIMIT_STACK, (pinned, hard))
    try:
        limits = replace(FAST, cpu_seconds=3, wall_seconds=6.0)
        sb = Sandbox(Policy(name="signals-test", limits=limits, prefork=1))
        sb.start()
    finally:
        resource.setrlimit(resource.RLIMIT_STACK, (soft, hard))
    try:
        yield sb
    finally:
        sb.close()


def nested(build: str, then: str, start: str = "iter([1])", depth: int = DEEP) -> str:
    """A function that nests ``build`` (of ``x``) ``depth`` times, then runs ``then``."""
    return (
        f"def f():\n    x = {start}\n    for _ in range({depth}):\n        x = {build}\n"
        f"    {then}\n"
    )


# Unchecked C recursion: each overflowed the C stack (SIGSEGV, `crash`) before the guard.
# fmt: off
C_STACK_BOMBS = [
    pytest.param(nested("(x,)", "return hash(x)", "()"), id="tuple-hash"),
    pytest.param(nested("(x,)", "return len({x})", "()"), id="tuple-in-a-set-display"),
    pytest.param(nested("(x,)", "d = {}\n    d[x] = 1\n    return 1", "()"),
                 id="tuple-as-dict-key"),
    pytest.param(nested("map(abs, x)", "return next(x)"), id="map-chain-next"),
    pytest.param(nested("map(abs, x)", "return sorted(x)"), id="map-chain-sorted"),
    pytest.param(nested("filter(None, x)", "return sum(x)"), id="filter-chain-sum"),
    pytest.param(nested("filter(None, x)", "return ''.join(x)", "iter(['a'])"),
                 id="filter-chain-join"),
    pytest.param(nested("zip(x)", "return len(next(x))"), id="zip-chain-next"),
    pytest.param(nested("enumerate(x)", "return len(next(x))"), id="enumerate-chain-next"),
    pytest.param("import itertools\n" + nested("itertools.chain(x)", "return next(x)"),
                 id="itertools-chain-next"),
    pytest.param("import itertools\n" + nested("itertools.islice(x, 5)", "return next(x)"),
                 id="itertools-islice-next"),
    pytest.param("import itertools\n" + nested("itertools.accumulate(x)", "return next(x)"),
                 id="itertools-accumulate-next"),
    pytest.param(nested("slice(x)", "x = None\n    return 1", "None"), id="slice-chain-freed"),
    pytest.param("def f():\n    a = slice(1)\n    b = slice(1)\n"
                 f"    for _ in range({DEEP}):\n        a = slice(a)\n        b = slice(b)\n"
                 "    return a == b\n", id="slice-chain-compared"),
    pytest.param(nested("(y for y in x)", "try:\n        next(x)\n    except RecursionError:\n"
                        "        pass\n    x = None\n    return 1", depth=100_000),
                 id="started-generator-chain-freed"),
    # at the recursion limit (no Python call left) and then an unchecked overflow
    pytest.param(nested("(x,)", "def down(n):\n        try:\n            return down(n + 1)\n"
                        "        except RecursionError:\n            return len({x})\n"
                        "    return down(0)", "()"), id="at-the-recursion-limit-then-hash"),
]
# fmt: on


@pytest.mark.parametrize("source", C_STACK_BOMBS)
def test_an_unchecked_c_recursion_is_a_recursion_error_not_a_crash(
    stack_8m: Sandbox, source: str
) -> None:
    out = stack_8m.call(source, "f")
    assert (out.error_kind, out.message) == (ErrorKind.RUNTIME, RUNTIME_OVERFLOW)
    assert out.usage.cpu_s > 0  # the child's own usage, filled in by the handler


def test_an_overflow_while_encoding_the_result_is_output(stack_8m: Sandbox) -> None:
    source = nested(
        "(x,)",
        "class D(dict):\n        def items(self):\n            return [('k', hash(x))]\n"
        "    return D(a=1)",
        "()",
    )
    out = stack_8m.call(source, "f")
    assert (out.error_kind, out.message) == (ErrorKind.OUTPUT, OUTPUT_OVERFLOW)


def test_a_stack_that_cannot_grow_for_lack_of_memory_is_memory(stack_8m: Sandbox) -> None:
    source = nested(
        "(x,)",
        "hog = []\n    try:\n        while True:\n            hog.append(bytearray(1 << 20))\n"
        "    except Exception:\n        pass\n    hog.pop()\n    return hash(x)",
        "()",
    )
    out = stack_8m.call(source, "f")
    assert (out.error_kind, out.message) == (ErrorKind.MEMORY, MEMORY_OVERFLOW)


def test_the_engine_keeps_serving_after_overflows(stack_8m: Sandbox) -> None:
    for _ in range(3):
        bomb = stack_8m.call(nested("(x,)", "return hash(x)", "()"), "f")
        assert bomb.error_kind is ErrorKind.RUNTIME
    out = stack_8m.call("def f(a):\n    print(a)\n    return [a, {'b': (1, 2)}]\n", "f", [3])
    assert out.ok and out.value == [3, {"b": [1, 2]}] and out.stdout == "3\n"


# Recursion CPython checks (Py_EnterRecursiveCall): a RecursionError at the limit of 1000,
# long before 8 MiB of C stack, through every C path a function can recurse through.
# fmt: off
CHECKED = [
    pytest.param("def f():\n    def k(n):\n        return sorted([n], key=k)\n    return k(0)\n",
                 LIMIT, id="sorted-key"),
    pytest.param("import re\ndef f():\n    def r(m):\n        return re.sub('a', r, 'a')\n"
                 "    return r(None)\n",
                 CALLING,
                 id="re-sub-replacement"),
    pytest.param("import json\ndef f():\n    class A:\n        pass\n    def d(o):\n"
                 "        return [json.dumps(A(), default=d)]\n"
                 "    return json.dumps(A(), default=d)\n",
                 CALLING,
                 id="json-default"),
    pytest.param("def f():\n    class A:\n        def __eq__(self, o):\n"
                 "            return [self] == [o]\n    return A() == A()\n",
                 LIMIT, id="eq-through-list-compare"),
    pytest.param("def f():\n    class A:\n        def __lt__(self, o):\n"
                 "            return bool(sorted([A(), A()]))\n"
                 "    return len(sorted([A(), A()]))\n",
                 LIMIT, id="lt-through-sort"),
    pytest.param("def f():\n    class A:\n        def __contains__(self, o):\n"
                 "            return o in self\n    return 1 in A()\n",
                 LIMIT, id="contains"),
    pytest.param("def f():\n    class A:\n        def __init__(self, n):\n"
                 "            self.x = A(n + 1)\n    return A(0)\n",
                 LIMIT, id="init-through-type-call"),
    pytest.param("def f():\n    def g(n):\n        return list(map(g, [n + 1]))\n    return g(0)\n",
                 CALLING,
                 id="map-with-a-python-function"),
    pytest.param("def f():\n    def k(n):\n        return max([n + 1], key=k)\n    return k(0)\n",
                 CALLING,
                 id="max-key"),
    pytest.param(nested("[x]", "return len(repr(x))", "[]"),
                 REPR,
                 id="repr-of-nested-lists"),
    pytest.param(nested("{1: x}", "return len(str(x))", "{}"),
                 REPR,
                 id="str-of-nested-dicts"),
    pytest.param("def f():\n    a = []\n    b = []\n    for _ in range(300000):\n        a = [a]\n"
                 "        b = [b]\n    return a == b\n",
                 f"{LIMIT} in comparison",
                 id="nested-lists-compared"),
    pytest.param(nested("(y for y in x)", "return next(x)", depth=2000),
                 LIMIT, id="generator-chain-next"),
]
# fmt: on


@pytest.mark.parametrize(("source", "message"), CHECKED)
def test_checked_recursion_through_c_stays_a_plain_recursion_error(
    stack_8m: Sandbox, source: str, message: str
) -> None:
    out = stack_8m.call(source, "f")
    assert (out.error_kind, out.message) == (ErrorKind.RUNTIME, message)


def test_a_result_nested_past_its_depth_is_output(stack_8m: Sandbox) -> None:
    out = stack_8m.call(nested("[x]", "return x", "[]"), "f")
    assert (out.error_kind, out.message) == (
        ErrorKind.OUTPUT,
        "result nests deeper than 200 levels (or is cyclic)",
    )


# Compiling happens in the child too. The parser stops at its own nesting limit (a
# MemoryError in 3.11, reported as the compile's memory limit), the restricted compiler at the
# recursion limit; none of these reaches the C stack's end.
# fmt: off
DEEP_SOURCES = [
    pytest.param("def f():\n    return " + "-" * 100_000 + "1\n",
                 "compile exceeded its memory limit (memory_mb=128)", id="unary-minus-chain"),
    pytest.param("def f():\n    return " + "lambda: " * 5000 + "1\n",
                 "compile exceeded its memory limit (memory_mb=128)", id="lambda-chain"),
    pytest.param("def f():\n    return " + "1 if 1 else " * 20_000 + "1\n",
                 "compile exceeded its memory limit (memory_mb=128)", id="conditional-chain"),
    pytest.param("def f():\n    x = [1]\n    return x" + "[0]" * 50_000 + "\n",
                 "source nests too deeply for the restricted compiler", id="subscript-chain"),
    pytest.param("def f():\n    return 1" + "+1" * 100_000 + "\n",
                 "source nests too deeply for the restricted compiler", id="operator-chain"),
]
# fmt: on


@pytest.mark.parametrize(("source", "message"), DEEP_SOURCES)
def test_deeply_nested_source_is_compile(stack_8m: Sandbox, source: str, message: str) -> None:
    out = stack_8m.call(source, "f")
    assert (out.error_kind, out.message) == (ErrorKind.COMPILE, message)
