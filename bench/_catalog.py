"""The soak's mix of functions: benign ones, hostile ones and resource bombs, each with the
outcome it must have under the default policy (bench/soak.py checks every call against it).

A :class:`Fn` is deployed to ColonyFS /faas under ``<key>_<run>`` and called with arguments
drawn from a seeded RNG. Benign calls must SUCCEED with exactly the expected ``out[0]``
(encoded as docs/protocol.md says); every other call must FAIL with the expected kind (the
part of the reason before ":") and a known piece of text in the reason. Bombs run with
maxexectime 2 (a wall limit of about 1.75 s), so the ones that spin or sleep end fast.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faas_sandbox.kinds import ProcessState

Args = tuple[list[Any], dict[str, Any]]


def _none(_: random.Random) -> Args:
    return [], {}


@dataclass(frozen=True)
class Fn:
    key: str
    group: str  # benign, hostile, bomb, input
    weight: float
    source: str  # body template with {name}; "" when nothing is deployed (not_found)
    kind: str = ""  # expected failure kind; "" means the call must succeed
    text: str = ""  # text the failure reason must contain
    make_args: Callable[[random.Random], Args] = _none
    out: Callable[[list[Any], dict[str, Any]], Any] | None = None  # expected out[0]
    maxexectime: int = 30
    raw_kwargs: dict[str, str] | None = None  # spec.kwargs sent as is ({name} filled in)

    @property
    def state(self) -> ProcessState:
        return ProcessState.FAILED if self.kind else ProcessState.SUCCESS


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _words(text: str) -> list[list[Any]]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return [[w, c] for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:2]]


_WORDS = ["alpha", "beta", "gamma", "delta", "colony", "sandbox"]

# A table, one entry per row as laid out by hand: ruff format leaves it alone.
# fmt: off
CATALOG: list[Fn] = [
    # -- benign: must succeed with exactly this output -----------------------------------------
    Fn("add", "benign", 20, "def {name}(a, b):\n    return a + b\n",
       make_args=lambda r: ([r.randint(-10**6, 10**6), r.randint(-10**6, 10**6)], {}),
       out=lambda a, k: a[0] + a[1]),
    Fn("greet", "benign", 10, "def {name}(who, greeting='hello'):\n"
                              "    return greeting + ' ' + who\n",
       make_args=lambda r: ([r.choice(_WORDS)], {"greeting": r.choice(["hi", "hey"])}),
       out=lambda a, k: f"{k['greeting']} {a[0]}"),
    Fn("stats", "benign", 10, "def {name}(xs):\n"
                              "    return {{'n': len(xs), 'sum': sum(xs), 'max': max(xs)}}\n",
       make_args=lambda r: ([[r.randint(0, 999) for _ in range(r.randint(1, 50))]], {}),
       out=lambda a, k: json.dumps({"n": len(a[0]), "sum": sum(a[0]), "max": max(a[0])},
                                   separators=(",", ":"))),
    Fn("chatty", "benign", 8, "def {name}(n):\n    for i in range(n):\n"
                              "        print('line', i)\n    return n\n",
       make_args=lambda r: ([r.randint(1, 20)], {}), out=lambda a, k: a[0]),
    Fn("fib", "benign", 8, "def {name}(n):\n    a, b = 0, 1\n    for _ in range(n):\n"
                           "        a, b = b, a + b\n    return a\n",
       make_args=lambda r: ([r.randint(10, 70)], {}), out=lambda a, k: _fib(a[0])),
    Fn("words", "benign", 7, "import collections\n\ndef {name}(text):\n"
                             "    counts = collections.Counter(text.lower().split())\n"
                             "    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))\n"
                             "    return [list(kv) for kv in top[:2]]\n",
       make_args=lambda r: ([" ".join(r.choice(_WORDS) for _ in range(20))], {}),
       out=lambda a, k: json.dumps(_words(a[0]), separators=(",", ":"))),
    # -- hostile: refused by the guards or the compiler ----------------------------------------
    Fn("import_os", "hostile", 3, "def {name}():\n    import os\n    return os.getcwd()\n",
       "forbidden", "import of 'os' is not allowed"),
    Fn("dunder", "hostile", 2, "def {name}():\n"
                               "    return ().__class__.__bases__[0].__subclasses__()\n",
       "compile", "invalid attribute name"),
    Fn("getattr_dunder", "hostile", 2, "def {name}():\n    return getattr((), '__class__')\n",
       "forbidden", "access to attribute '__class__'"),
    Fn("open_file", "hostile", 2, "def {name}():\n    return open('/etc/passwd').read()\n",
       "forbidden", "builtin 'open' is not available"),
    Fn("eval_call", "hostile", 2, "def {name}():\n    return eval('1+1')\n",
       "compile", "Eval calls are not allowed"),
    Fn("raises", "hostile", 3, "def {name}(x):\n    raise ValueError('bad input ' + str(x))\n",
       "runtime", "ValueError: bad input", make_args=lambda r: ([r.randint(0, 9)], {})),
    Fn("divide_zero", "hostile", 2, "def {name}():\n    return 1 / 0\n",
       "runtime", "ZeroDivisionError"),
    Fn("not_json", "hostile", 1, "def {name}():\n    return object()\n",
       "output", "not JSON-serialisable"),
    # -- resource bombs: end fast under the default limits -----------------------------------
    Fn("spin", "bomb", 1.5, "def {name}():\n    while True:\n        pass\n",
       "timeout", "wall-clock limit", maxexectime=2),
    Fn("sleep", "bomb", 1.5, "import time\n\ndef {name}():\n    time.sleep(60)\n",
       "timeout", "wall-clock limit", maxexectime=2),
    Fn("big_string", "bomb", 2, "def {name}():\n    return len('x' * (2 ** 30))\n",
       "memory", "memory limit exceeded", maxexectime=2),
    Fn("grow_list", "bomb", 2, "def {name}():\n    x = []\n    while True:\n"
                               "        x.append([0] * 100000)\n",
       "memory", "memory limit exceeded", maxexectime=2),
    Fn("double_string", "bomb", 1, "def {name}():\n    s = 'ab'\n    while True:\n"
                                   "        s = s + s\n",
       "memory", "memory limit exceeded", maxexectime=2),
    Fn("print_flood", "bomb", 2, "def {name}():\n    while True:\n        print('y' * 1000)\n",
       "output", "max_stdout_bytes", maxexectime=2),
    Fn("big_result", "bomb", 1.5, "def {name}():\n    return 'x' * (2 * 10 ** 6)\n",
       "output", "max_result_bytes", maxexectime=2),
    Fn("recursion", "bomb", 1.5, "def {name}(n=0):\n    return {name}(n + 1)\n",
       "runtime", "RecursionError", maxexectime=2),
    Fn("deep_result", "bomb", 1, "def {name}():\n    x = []\n    for i in range(500):\n"
                                 "        x = [x]\n    return x\n",
       "output", "nests deeper than", maxexectime=2),
    # -- bad input: refused by the executor before any code runs -----------------------------
    Fn("missing", "input", 2, "", "not_found", "no function"),
    Fn("bad_args", "input", 2, "def {name}(x):\n    return x\n", "spec",
       "kwargs.args is not valid JSON", raw_kwargs={"function": "{name}", "args": "[1, 2"}),
]
# fmt: on


def pick(rng: random.Random, count: int, catalog: list[Fn] = CATALOG) -> list[Fn]:
    """``count`` functions drawn by weight (the same sequence for the same seed)."""
    return rng.choices(catalog, weights=[fn.weight for fn in catalog], k=count)


def benign_only() -> list[Fn]:
    return [fn for fn in CATALOG if fn.group == "benign"]
