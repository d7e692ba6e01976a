"""The restricted compiler's AST changes (faas_sandbox/engine/transform.py), run in-process.

Only benign snippets run here (no fork, no limits); the hostile side is in
tests/sandbox/test_hostile.py.
"""

from __future__ import annotations

from typing import Any

from faas_sandbox.engine.guards import RunState, compile_source, make_globals
from faas_sandbox.policy import DEFAULT_MODULES


def run(source: str) -> dict[str, Any]:
    compiled = compile_source(source)
    assert compiled.code is not None, compiled.errors
    g = make_globals(RunState(max_stdout_bytes=4096), DEFAULT_MODULES)
    exec(compiled.code, g)
    return g


AUG_SOURCE = """
log = []
d = {'k': 10}
class Box:
    pass
box = Box()
box.n = 1

def obj():
    log.append('obj')
    return d

def key():
    log.append('key')
    return 'k'

def val():
    log.append('val')
    return 5

def holder():
    log.append('holder')
    return box

obj()[key()] += val()
holder().n *= val()
"""


def test_augmented_assignment_matches_python_order_and_evaluates_once() -> None:
    restricted = run(AUG_SOURCE)
    native: dict[str, Any] = {}
    exec(AUG_SOURCE, native)
    assert restricted["log"] == native["log"] == ["obj", "key", "val", "holder", "val"]
    assert restricted["d"] == {"k": 15}
    assert restricted["box"].n == 5


def test_augmented_assignment_temporaries_do_not_leak() -> None:
    g = run("""
class Counter:
    hits = {'a': 1}
    hits['a'] += 1
def f():
    data = [1, 2]
    data[0] += 10
    return data
result = f()
""")
    assert g["result"] == [11, 2]
    assert g["Counter"].hits == {"a": 2}
    assert not [name for name in vars(g["Counter"]) if name.startswith("_tmp")]
    assert not [name for name in g if name.startswith("_tmp")]


def test_annotations_are_dropped_and_never_evaluated() -> None:
    g = run("""
def f(a: undefined_name, *args: "().__class__", b: int = 1, **kw: str) -> "open('x')":
    x: also_undefined = a
    y: int
    return x + b
value = f(2)
""")
    assert g["value"] == 3
    assert g["f"].__annotations__ == {}


def test_class_keywords_and_slice_augassign_are_refused() -> None:
    for source, fragment in [
        ("class A(**{'metaclass': type}):\n    pass\n", "Class keywords"),
        ("class A(flag=True):\n    pass\n", "Class keywords"),
        ("a = [1, 2]\na[0:1] += [3]\n", "Augmented assignment of object items"),
        ("class A:\n    pass\nA().__x += 1\n", '"__x" is an invalid attribute name'),
        ("def g():\n    pass\ng().gi_frame += 1\n", '"gi_frame" is a restricted name'),
        ("x = 1\nx.__class__: int = 2\n", '"__class__" is an invalid attribute name'),
    ]:
        compiled = compile_source(source)
        assert compiled.code is None, source
        assert any(fragment in error for error in compiled.errors), compiled.errors


def test_super_dunder_reads_compile_only_on_a_super_call() -> None:
    assert compile_source("class A:\n    def __init__(self):\n        super().__init__()\n").code
    compiled = compile_source("def f(x):\n    return x.__init__\n")
    assert compiled.code is None
    assert "__init__" in compiled.errors[0]
