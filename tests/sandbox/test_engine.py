"""The engine end to end: values come back exactly, and every error kind is classified.

Each limit test uses small limits and a workload that ends at once or never, and asserts the
exact kind plus a loose upper bound on time (the two shared cores are often busy).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from faas_sandbox import ErrorKind, Limits, Policy, Sandbox, Usage

from .conftest import FAST

CONVERT = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"
LOOSE_S = 5.0  # loose upper bound on any single call here


def test_tutorial_convert_returns_69_8_exactly(engine: Sandbox) -> None:
    out = engine.call(CONVERT, "convert", [21])
    assert out.ok and out.value == 69.8 and out.error_kind is None
    assert out.message == "" and out.stdout == ""
    assert 0 < out.usage.wall_s < LOOSE_S
    assert out.usage.cpu_s > 0 and out.usage.max_rss_bytes > 1 << 20


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        2**100,
        1.5,
        "",
        "héllo ✓ 𝄞",
        [1, [2, [3]]],
        {"a": {"b": [None, False]}},
        ["x" * 1000] * 10,
    ],
)
def test_json_values_round_trip(engine: Sandbox, value: Any) -> None:
    out = engine.call("def echo(v):\n    return v\n", "echo", [value])
    assert out.ok, out
    assert out.value == value


def test_kwargs_tuples_and_stdout(engine: Sandbox) -> None:
    source = (
        "def f(a, b=2, *, c):\n    print('a', a, end='|')\n    print(c)\n    return (a, b, c)\n"
    )
    out = engine.call(source, "f", [1], {"c": "z"})
    assert out.ok and out.value == [1, 2, "z"]  # a tuple arrives as a JSON list
    assert out.stdout == "a 1|z\n"


def test_callers_json_args_reach_the_child_untouched(engine: Sandbox) -> None:
    out = engine.call(
        "def f(a, b=2, *, c):\n    return [a, b, c]\n", "f", args_json=b'[[1.0],{"c":"\\u00e9"}]'
    )
    assert out.ok and out.value == [1.0, 2, "é"] and out.value_json == '[1.0,2,"é"]'.encode()
    bad = engine.call("def f():\n    return 1\n", "f", args_json=b'{"not": "a list"}')
    assert bad.error_kind is ErrorKind.RUNTIME
    assert bad.message.startswith("ValueError: arguments could not be decoded")
    with pytest.raises(TypeError):
        engine.call("def f():\n    return 1\n", "f", args_json="[[],{}]")  # type: ignore[arg-type]


def test_an_overlong_function_name_is_refused_before_anything_runs(engine: Sandbox) -> None:
    out = engine.call(CONVERT, "f" * 1025, [1])
    assert (out.error_kind, out.message) == (
        ErrorKind.RUNTIME,
        "NameError: function name is over 1024 bytes",
    )
    assert out.usage == Usage()


def test_runtime_error_carries_type_and_text(engine: Sandbox) -> None:
    out = engine.call("def f(x):\n    return 1 / x\n", "f", [0])
    assert out.error_kind is ErrorKind.RUNTIME
    assert out.message == "ZeroDivisionError: division by zero"


def test_runtime_error_keeps_stdout(engine: Sandbox) -> None:
    out = engine.call("def f():\n    print('before')\n    raise ValueError('boom')\n", "f")
    assert (out.error_kind, out.message, out.stdout) == (
        ErrorKind.RUNTIME,
        "ValueError: boom",
        "before\n",
    )


def test_wrong_arguments_are_a_runtime_type_error(engine: Sandbox) -> None:
    out = engine.call(CONVERT, "convert", [1, 2])
    assert out.error_kind is ErrorKind.RUNTIME and out.message.startswith("TypeError: ")


@pytest.mark.parametrize("source", [CONVERT, "convert = 3\n"])
def test_missing_or_uncallable_function_is_a_name_error(engine: Sandbox, source: str) -> None:
    out = engine.call(source, "missing" if source == CONVERT else "convert")
    assert out.error_kind is ErrorKind.RUNTIME
    assert out.message.startswith("NameError: source defines no function ")


def test_recursion_is_runtime(engine: Sandbox) -> None:
    out = engine.call("def f():\n    return f()\n", "f")
    assert out.error_kind is ErrorKind.RUNTIME and out.message.startswith("RecursionError")


def test_syntax_error_is_compile_and_its_resubmission_costs_no_child(engine: Sandbox) -> None:
    source = "def f(:\n    pass\n"
    first = engine.call(source, "f")
    assert first.error_kind is ErrorKind.COMPILE and "SyntaxError" in first.message
    assert first.usage.cpu_s > 0  # compiled in a child, under the call's limits
    again = engine.call(source, "f")
    assert (again.error_kind, again.message) == (ErrorKind.COMPILE, first.message)
    assert again.usage == Usage()  # replayed from the refused-compile cache, nothing forked


def test_restricted_compiler_refusal_is_compile(engine: Sandbox) -> None:
    out = engine.call("def f():\n    return ().__class__\n", "f")
    assert out.error_kind is ErrorKind.COMPILE and "__class__" in out.message


def test_oversize_source_is_refused_as_compile(make_sandbox: Any) -> None:
    sb = make_sandbox(limits=Limits(**{**_fast(), "max_source_bytes": 100}))
    out = sb.call("def f():\n    return 1\n" + "#" * 100, "f")
    assert out.error_kind is ErrorKind.COMPILE
    assert out.message == "source is 122 bytes, over the limit of 100 (max_source_bytes)"


def test_oversize_or_non_json_args_are_refused_as_runtime(make_sandbox: Any) -> None:
    sb = make_sandbox(limits=Limits(**{**_fast(), "max_args_bytes": 64}))
    big = sb.call("def f(x):\n    return 1\n", "f", ["x" * 100])
    assert big.error_kind is ErrorKind.RUNTIME
    assert big.message == (
        "ValueError: arguments are 109 bytes of JSON, over the limit of 64 (max_args_bytes)"
    )
    odd = sb.call("def f(x):\n    return 1\n", "f", [object()])
    assert odd.error_kind is ErrorKind.RUNTIME
    assert odd.message.startswith("ValueError: arguments are not JSON-serialisable")


def test_guard_refusal_is_forbidden(engine: Sandbox) -> None:
    out = engine.call("import os\ndef f():\n    return 1\n", "f")
    assert out.error_kind is ErrorKind.FORBIDDEN
    assert out.message == "import of 'os' is not allowed by the policy"


def test_guard_refusal_is_forbidden_even_when_caught(engine: Sandbox) -> None:
    source = (
        "def f():\n    try:\n        getattr((), '__cl' + 'ass__')\n"
        "    except:\n        pass\n    return 'escaped'\n"
    )
    out = engine.call(source, "f")
    assert out.error_kind is ErrorKind.FORBIDDEN
    assert out.message == "access to attribute '__class__' is not allowed"


# -- limits -------------------------------------------------------------------------------


def test_busy_loop_hits_the_wall_clock(engine: Sandbox) -> None:
    t0 = time.monotonic()
    out = engine.call("def f():\n    while True:\n        pass\n", "f", maxexectime=0.5)
    assert out.error_kind is ErrorKind.TIMEOUT
    assert out.message == "wall-clock limit of 0.5 s exceeded"
    assert 0.5 <= out.usage.wall_s < LOOSE_S and time.monotonic() - t0 < LOOSE_S


def test_sleeping_function_is_killed_at_the_wall_clock(engine: Sandbox) -> None:
    out = engine.call("import time\ndef f():\n    time.sleep(60)\n", "f", maxexectime=0.3)
    assert out.error_kind is ErrorKind.TIMEOUT and out.usage.cpu_s < 0.3


def test_per_function_policy_lowers_the_wall_clock(make_sandbox: Any) -> None:
    sb = make_sandbox(Policy(limits=FAST, functions={"f": {"wall_seconds": 0.3}}))
    out = sb.call("def f():\n    while True:\n        pass\n", "f")
    assert (out.error_kind, out.message) == (
        ErrorKind.TIMEOUT,
        "wall-clock limit of 0.3 s exceeded",
    )


def test_cpu_loop_hits_rlimit_cpu_before_the_wall(make_sandbox: Any) -> None:
    sb = make_sandbox(limits=Limits(wall_seconds=5.0, cpu_seconds=1, memory_mb=64))
    out = sb.call("def f():\n    n = 0\n    while True:\n        n += 1\n", "f")
    assert (out.error_kind, out.message) == (ErrorKind.CPU, "CPU-time limit of 1 s exceeded"), (
        out.usage
    )
    assert out.usage.cpu_s > 0.5


@pytest.mark.parametrize("expr", ["10 ** (10 ** 8)", "pow(3, 10 ** 9)"])
def test_huge_integer_power_hits_the_cpu_limit_first(make_sandbox: Any, expr: str) -> None:
    # Given 1 s of CPU and 64 MiB: reaching an intermediate over 64 MiB takes many seconds
    # of multiplication, so RLIMIT_CPU (SIGXCPU) always fires first, never MemoryError.
    sb = make_sandbox(limits=Limits(wall_seconds=8.0, cpu_seconds=1, memory_mb=64))
    out = sb.call(f"def f():\n    return {expr}\n", "f")
    assert (out.error_kind, out.message) == (ErrorKind.CPU, "CPU-time limit of 1 s exceeded"), (
        out.usage
    )


def test_huge_allocation_is_memory(make_sandbox: Any) -> None:
    sb = make_sandbox(limits=Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=64))
    out = sb.call("def f():\n    return 'x' * 2 ** 30\n", "f")
    assert (out.error_kind, out.message) == (
        ErrorKind.MEMORY,
        "memory limit exceeded (memory_mb=64)",
    )


def test_growing_list_is_memory_not_a_crash(engine: Sandbox) -> None:
    source = "def f():\n    keep = []\n    while True:\n        keep.append(bytes(1 << 20))\n"
    out = engine.call(source, "f")
    assert (out.error_kind, out.message) == (
        ErrorKind.MEMORY,
        "memory limit exceeded (memory_mb=128)",
    )


def test_print_flood_is_output(engine: Sandbox) -> None:
    out = engine.call("def f():\n    while True:\n        print('x' * 100)\n", "f")
    assert out.error_kind is ErrorKind.OUTPUT
    assert out.message == "print output passed its cap of 4096 bytes (max_stdout_bytes)"
    assert len(out.stdout.encode()) == FAST.max_stdout_bytes


def test_print_flood_is_output_even_when_caught(engine: Sandbox) -> None:
    source = (
        "def f():\n    for i in range(100):\n        try:\n            print('x' * 100)\n"
        "        except:\n            pass\n    return 1\n"
    )
    assert engine.call(source, "f").error_kind is ErrorKind.OUTPUT


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("return object()", "not JSON-serialisable: TypeError"),
        ("return float('nan')", "Out of range float values"),
        ("x = []\n    x.append(x)\n    return x", "Circular reference"),
        (
            "x = []\n    for i in range(300):\n        x = [x]\n    return x",
            "nests deeper than 200",
        ),
        ("return {(1, 2): 3}", "keys must be str"),
    ],
)
def test_unsendable_results_are_output(engine: Sandbox, body: str, fragment: str) -> None:
    out = engine.call(f"def f():\n    {body}\n", "f")
    assert out.error_kind is ErrorKind.OUTPUT and fragment in out.message, out


def test_result_cap_is_exact_and_large_results_round_trip(make_sandbox: Any) -> None:
    n = 5_000_000
    source = "def f(n):\n    return 'x' * n\n"
    sb = make_sandbox(limits=Limits(**{**_fast(), "max_result_bytes": n + 2}))
    out = sb.call(source, "f", [n])  # JSON of the string is n + 2 bytes (the quotes)
    assert out.ok and out.value == "x" * n
    over = sb.call(source, "f", [n + 1])
    assert over.error_kind is ErrorKind.OUTPUT
    assert over.message == (
        f"result is {n + 3} bytes of JSON, over the limit of {n + 2} (max_result_bytes)"
    )


def _fast() -> dict[str, Any]:
    return {name: getattr(FAST, name) for name in FAST.__dataclass_fields__}
