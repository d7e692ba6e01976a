"""Ordinary code must work under the default policy, with exact values and exact stdout.

Runs through the real engine (``faas_sandbox.Sandbox``) with ``policies/default.toml``, one
Sandbox for the whole module. Each case is data: source, function, args/kwargs, the exact
return value (after the JSON round trip: tuples come back as lists) and the exact stdout.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from faas_sandbox import Policy

pytestmark = pytest.mark.fork

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.toml"


class Case(NamedTuple):
    id: str
    source: str
    function: str
    value: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] | None = None
    stdout: str = ""


def c(
    id: str,
    source: str,
    function: str,
    value: Any,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] | None = None,
    stdout: str = "",
) -> Case:
    return Case(id, source.strip("\n") + "\n", function, value, args, kwargs, stdout)


_rng = random.Random(42)
SEEDED = [_rng.randint(1, 100) for _ in range(5)]

# A table, one entry per row as laid out by hand: ruff format leaves it alone.
# fmt: off
CASES = [
    c("tutorial-convert", """
def convert(celsius):
    return (celsius * 9/5) + 32
""", "convert", 69.8, args=(21.0,)),
    c("class-attributes-on-self", """
class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y
        self.moves = 0

    def move(self, dx, dy):
        self.x = self.x + dx
        self.y += dy
        self.moves += 1
        return self

def f():
    p = Point(1, 2).move(3, 4).move(1, 1)
    del p.moves
    return [p.x, p.y, hasattr(p, 'moves'), getattr(p, 'missing', 'default')]
""", "f", [5, 7, False, "default"]),
    c("inheritance-and-super", """
class Animal:
    def __init__(self, name, sound='...'):
        self.name = name
        self.sound = sound

    def speak(self):
        return f"{self.name} says {self.sound}"

class Dog(Animal):
    def __init__(self, name):
        super().__init__(name, 'woof')
        self.tricks = []

    def speak(self):
        return super().speak() + '!'

class Puppy(Dog):
    def speak(self):
        return super(Dog, self).speak().upper()

def f():
    d = Dog('Rex')
    d.tricks.append('sit')
    return [d.speak(), Puppy('Bit').speak(), isinstance(d, Animal), issubclass(Puppy, Animal),
            d.tricks]
""", "f", ["Rex says woof!", "BIT SAYS WOOF", True, True, ["sit"]]),
    c("diamond-mro", """
class A:
    def who(self):
        return ['A']
class B(A):
    def who(self):
        return ['B'] + super().who()
class C(A):
    def who(self):
        return ['C'] + super().who()
class D(B, C):
    def who(self):
        return ['D'] + super().who()
def f():
    return D().who()
""", "f", ["D", "B", "C", "A"]),
    c("exception-subclass", """
class AppError(Exception):
    def __init__(self, code, text):
        super().__init__(f"{code}: {text}")
        self.code = code

def f():
    try:
        raise AppError(404, 'not found')
    except AppError as e:
        return [e.code, str(e), e.args[0]]
""", "f", [404, "404: not found", "404: not found"]),
    c("dunder-comparisons-and-contains", """
class Version:
    def __init__(self, major, minor):
        self.key = (major, minor)
    def __eq__(self, other):
        return self.key == other.key
    def __lt__(self, other):
        return self.key < other.key
    def __contains__(self, n):
        return n in self.key

def f():
    vs = sorted([Version(1, 2), Version(0, 9), Version(1, 0)])
    return [[v.key for v in vs], Version(1, 0) == Version(1, 0), 9 in Version(0, 9)]
""", "f", [[[0, 9], [1, 0], [1, 2]], True, True]),
    c("property-classmethod-staticmethod", """
class Temp:
    scale = 'C'
    def __init__(self, c):
        self.c = c
    @property
    def f(self):
        return self.c * 9 / 5 + 32
    @classmethod
    def freezing(cls):
        return cls(0)
    @staticmethod
    def describe():
        return 'temperature'
def f():
    t = Temp.freezing()
    return [t.f, Temp.describe(), Temp.scale, Temp(100).f]
""", "f", [32.0, "temperature", "C", 212.0]),
    c("f-strings", """
def f(name, x):
    d = {'k': [1, 2]}
    return f"{name!r} {x:.2f} {len(name):>4} {d['k'][1]} {x*2:08.3f} {name.upper()}"
""", "f", "'ada' 3.14    3 2 0006.283 ADA", args=("ada", 3.14159)),
    c("print-captured", """
def f():
    print('a', 1)
    print('b', end='')
    print(1, 2, sep='-')
    print('ünï', 'x', sep='', flush=True)
    print()
    return 'done'
""", "f", "done", stdout="a 1\nb1-2\nünïx\n\n"),
    c("comprehensions", """
def f(n):
    squares = [i * i for i in range(n) if i % 2 == 0]
    table = {i: [j for j in range(i)] for i in range(3)}
    letters = {ch for ch in 'mississippi'}
    pairs = [(a, b) for a in range(3) for b in range(a)]
    return [squares, table, sorted(letters), pairs]
""", "f", [[0, 4, 16, 36], {"0": [], "1": [0], "2": [0, 1]}, ["i", "m", "p", "s"],
           [[1, 0], [2, 0], [2, 1]]], args=(7,)),
    c("generators", """
def countdown(n):
    while n > 0:
        yield n
        n -= 1

def chained():
    yield from countdown(2)
    yield from (x * 10 for x in range(2))

def echo():
    total = 0
    while True:
        got = yield total
        total += got

def f():
    e = echo()
    next(e)
    sent = [e.send(1), e.send(5)]
    it = iter([1])
    return [list(countdown(3)), list(chained()), sum(x for x in range(5)), sent,
            next(it), next(it, 'empty')]
""", "f", [[3, 2, 1], [2, 1, 0, 10], 10, [1, 6], 1, "empty"]),
    c("try-except-finally", """
def attempt(fn):
    log = []
    try:
        log.append(fn())
    except (KeyError, IndexError) as e:
        log.append('lookup ' + type_name(e))
    except ZeroDivisionError:
        log.append('zero')
    except ValueError as e:
        log.append('value ' + str(e))
    except Exception as e:
        log.append('other')
    else:
        log.append('else')
    finally:
        log.append('finally')
    return log

def type_name(e):
    if isinstance(e, KeyError):
        return 'KeyError'
    return 'IndexError'

def f():
    return [attempt(lambda: {}['x']), attempt(lambda: [][1]), attempt(lambda: 1 / 0),
            attempt(lambda: int('x1')), attempt(lambda: None + 1), attempt(lambda: 'ok')]
""", "f", [["lookup KeyError", "finally"], ["lookup IndexError", "finally"],
           ["zero", "finally"], ["value invalid literal for int() with base 10: 'x1'",
                                 "finally"], ["other", "finally"], ["ok", "else", "finally"]]),
    c("raise-from-and-reraise", """
def parse(s):
    try:
        return int(s)
    except ValueError as e:
        raise RuntimeError('bad input ' + s) from e

def f():
    try:
        parse('zz')
    except RuntimeError as e:
        return [str(e), isinstance(e, Exception)]
""", "f", ["bad input zz", True]),
    c("stdlib-imports", """
import math, json, re, statistics, itertools, fractions
from decimal import Decimal, getcontext, localcontext, ROUND_HALF_UP
from collections import Counter, defaultdict, deque, OrderedDict

def f():
    data = [2, 4, 4, 4, 5, 5, 7, 9]
    groups = defaultdict(list)
    for word in ['apple', 'avocado', 'banana']:
        groups[word[0]].append(word)
    dq = deque([1, 2, 3])
    dq.rotate(1)
    od = OrderedDict(a=1, b=2)
    od.move_to_end('a')
    getcontext().prec = 6
    with localcontext() as ctx:
        ctx.prec = 3
        third = str(Decimal(1) / Decimal(3))
    return {
        'math': [math.sqrt(16), math.isclose(math.pi, 3.14159, rel_tol=1e-5), math.gcd(12, 18)],
        'json': json.loads(json.dumps({'b': [1, 2], 'a': None}, sort_keys=True)),
        'json_text': json.dumps({'b': 1, 'a': 2}, sort_keys=True),
        're': [re.findall(r'\\d+', 'a1b22c333'),
               re.sub(r'(\\w+)@(\\w+)', r'\\2 at \\1', 'me@home')],
        'statistics': [statistics.mean(data), statistics.median(data), statistics.pstdev(data)],
        'itertools': [list(itertools.accumulate([1, 2, 3, 4])),
                      [k for k, _ in itertools.groupby('aaabbc')],
                      len(list(itertools.permutations('abc'))),
                      list(itertools.islice(itertools.count(10, 5), 3))],
        'decimal': [str(Decimal('0.1') + Decimal('0.2')), third, str(Decimal(1) / Decimal(7)),
                    str(Decimal('2.675').quantize(Decimal('0.01'), rounding=ROUND_HALF_UP))],
        'fractions': str(fractions.Fraction(1, 3) + fractions.Fraction(1, 6)),
        'collections': [Counter('abracadabra').most_common(2), dict(groups), list(dq),
                        list(od)],
    }
""", "f", {
        "math": [4.0, True, 6],
        "json": {"a": None, "b": [1, 2]},
        "json_text": '{"a": 2, "b": 1}',
        "re": [["1", "22", "333"], "home at me"],
        "statistics": [5, 4.5, 2.0],
        "itertools": [[1, 3, 6, 10], ["a", "b", "c"], 6, [10, 15, 20]],
        "decimal": ["0.3", "0.333", "0.142857", "2.68"],
        "fractions": "1/2",
        "collections": [[["a", 5], ["b", 2]], {"a": ["apple", "avocado"], "b": ["banana"]},
                        [3, 1, 2], ["b", "a"]],
    }),
    c("random-seeded", """
import random
def f():
    random.seed(42)
    return [random.randint(1, 100) for _ in range(5)]
""", "f", SEEDED),
    c("random-instance", """
import random
def f():
    r = random.Random(42)
    return [r.randint(1, 100) for _ in range(5)]
""", "f", SEEDED),
    c("datetime", """
import datetime
from datetime import date, timedelta
def f():
    d = date(2024, 2, 29)
    parsed = datetime.datetime.strptime('2024-03-01 12:30', '%Y-%m-%d %H:%M')
    aware = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    return [(date(2024, 3, 1) - date(2024, 2, 1)).days, d.strftime('%A %d %B %Y'),
            (d + timedelta(days=1)).isoformat(), parsed.isoformat(), parsed.weekday(),
            aware.isoformat(), aware.timestamp()]
""", "f", [29, "Thursday 29 February 2024", "2024-03-01", "2024-03-01T12:30:00", 4,
           "2024-01-01T00:00:00+00:00", 1704067200.0]),
    c("builtins-over-iterables", """
def f():
    words = ['pear', 'fig', 'banana', 'kiwi']
    return [sorted(words), sorted(words, key=len, reverse=True), list(zip(words, range(3))),
            list(enumerate(words, start=1))[:2], min(words, key=len), max(3, 9, 4),
            sum([1.5, 2.5], 10), any(w.startswith('k') for w in words),
            all(len(w) > 2 for w in words), list(reversed(words)),
            list(map(str.upper, words[:2])), list(filter(lambda w: 'a' in w, words)),
            divmod(17, 5), pow(2, 10, 1000), round(3.14159, 2), abs(-3), hex(255),
            bin(5), oct(8), chr(97), ord('a'), int('ff', 16), float('1.5'), bool([]),
            list(range(10, 0, -3)), [1, 2, 3, 4][::-1], len({'a': 1})]
""", "f", [["banana", "fig", "kiwi", "pear"], ["banana", "pear", "kiwi", "fig"],
           [["pear", 0], ["fig", 1], ["banana", 2]], [[1, "pear"], [2, "fig"]], "fig", 9,
           14.0, True, True, ["kiwi", "banana", "fig", "pear"], ["PEAR", "FIG"],
           ["pear", "banana"], [3, 2], 24, 3.14, 3, "0xff", "0b101", "0o10", "a", 97, 255,
           1.5, False, [10, 7, 4, 1], [4, 3, 2, 1], 1]),
    c("closures-lambdas-decorators", """
def make_adder(n):
    def add(x):
        return x + n
    return add

def make_counter():
    state = {'n': 0}
    def bump():
        state['n'] += 1
        return state['n']
    return bump

def twice(fn):
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) * 2
    return wrapper

@twice
def area(w, h=1):
    return w * h

def f():
    add5 = make_adder(5)
    bump = make_counter()
    bump()
    square = lambda x: x ** 2
    return [add5(10), bump(), square(7), area(3, h=4), sorted([3, 1, 2], key=lambda v: -v)]
""", "f", [15, 2, 49, 24, [3, 2, 1]]),
    c("recursion-depth-200", """
def fact(n):
    return 1 if n <= 1 else n * fact(n - 1)

def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)

def f():
    return [len(str(fact(200))), fact(200) % 1000000007, depth(200)]
""", "f", [375, math.factorial(200) % 1000000007, 200]),
    c("kwargs-and-defaults", """
def f(a, b=2, *rest, scale=1, **extra):
    return {'a': a, 'b': b, 'rest': list(rest), 'scale': scale, 'extra': extra,
            'total': (a + b + sum(rest)) * scale}
""", "f", {"a": 1, "b": 5, "rest": [7, 8], "scale": 3, "extra": {"tag": "x"}, "total": 63},
      args=(1, 5, 7, 8), kwargs={"scale": 3, "tag": "x"}),
    c("kwargs-only-call", """
def f(name, greeting='hello'):
    return f"{greeting}, {name}"
""", "f", "hi, bob", kwargs={"name": "bob", "greeting": "hi"}),
    c("nested-json-result", """
def f(order):
    lines = [{'sku': sku, 'qty': qty, 'ok': qty > 0} for sku, qty in order['items']]
    return {'id': order['id'], 'lines': lines, 'meta': {'count': len(lines), 'note': None,
            'ratio': 0.25, 'flags': [True, False]}}
""", "f", {"id": 7, "lines": [{"sku": "a", "qty": 2, "ok": True},
                              {"sku": "b", "qty": 0, "ok": False}],
           "meta": {"count": 2, "note": None, "ratio": 0.25, "flags": [True, False]}},
      args=({"id": 7, "items": [["a", 2], ["b", 0]]},)),
    c("unicode", """
def f(text):
    print(text[::-1])
    return [text.upper(), len(text), text.encode('utf-8').hex()[:8], '日本語'[1], 'ß'.upper(),
            '\\N{SNOWMAN}', 'é' == '\\u00e9']
""", "f", ["HÉLLO WÖRLD ☃", 13, "68c3a96c", "本", "SS", "☃", True],
      args=("héllo wörld ☃",), stdout="☃ dlröw olléh\n"),
    c("augmented-assignment-of-items-and-attributes", """
from collections import Counter
class Acc:
    def __init__(self):
        self.total = 0
        self.items = []
def f():
    counts = {}
    for w in 'a b a c a'.split():
        counts[w] = counts.get(w, 0)
        counts[w] += 1
    c = Counter()
    c['x'] += 2
    grid = [[1, 2], [3, 4]]
    grid[1][0] *= 10
    acc = Acc()
    for n in range(4):
        acc.total += n
        acc.items += [n]
    text = 'ab'
    text *= 2
    return [counts, dict(c), grid, acc.total, acc.items, text]
""", "f", [{"a": 3, "b": 1, "c": 1}, {"x": 2}, [[1, 2], [30, 4]], 6, [0, 1, 2, 3], "abab"]),
    c("type-hints", """
from __future__ import annotations

def scale(values: list[float], factor: float = 2.0) -> list[float]:
    result: list[float] = []
    for v in values:
        result.append(v * factor)
    return result

def f() -> dict[str, list[float]]:
    count: int
    return {'scaled': scale([1.0, 2.5])}
""", "f", {"scaled": [2.0, 5.0]}),
    c("unpacking-loops-walrus-global", """
calls = 0
def bump():
    global calls
    calls += 1
    return calls

def f():
    first, *middle, last = [1, 2, 3, 4, 5]
    a, (b, c) = 1, (2, 3)
    a, b = b, a
    found = None
    for i in range(10):
        if i == 2:
            continue
        if (sq := i * i) > 20:
            found = sq
            break
    else:
        found = -1
    n = 0
    while True:
        n += 1
        if n >= 3:
            break
    bump()
    return [first, middle, last, a, b, c, found, n, bump(),
            [k + str(v) for k, v in {'x': 1, 'y': 2}.items()]]
""", "f", [1, [2, 3, 4], 5, 2, 1, 3, 25, 3, 2, ["x1", "y2"]]),
    c("strings-bytes-sets", """
def f():
    s = '  Hello, World  '
    b = bytearray(b'ab')
    b.append(99)
    return [s.strip().lower().replace('world', 'there'), ','.join(['a', 'b']),
            'a,b,,c'.split(','), 'x'.zfill(3), 'mid'.center(7, '*'), '%s=%d' % ('k', 5),
            '%.1f%%' % 12.34, 'abc'.encode().hex(), bytes(b).decode(), bytes([104, 105]).decode(),
            sorted({1, 2, 3} | {3, 4}), sorted({1, 2, 3} & {2, 3, 9}),
            sorted(frozenset('aab')), 'Straße'.casefold(), s.split()]
""", "f", ["hello, there", "a,b", ["a", "b", "", "c"], "00x", "**mid**", "k=5", "12.3%",
           "616263", "abc", "hi", [1, 2, 3, 4], [2, 3], ["a", "b"], "strasse",
           ["Hello,", "World"]]),
    c("heapq-bisect-textwrap-string-time", """
import heapq, bisect, textwrap, string, time
def f():
    h = []
    for v in [5, 1, 4, 2]:
        heapq.heappush(h, v)
    sorted_list = [1, 3, 5]
    bisect.insort(sorted_list, 4)
    t0 = time.monotonic()
    time.sleep(0.01)
    return [heapq.heappop(h), heapq.nsmallest(2, [9, 7, 8]), sorted_list,
            bisect.bisect_left(sorted_list, 4), textwrap.fill('aaa bbb ccc', width=7),
            string.ascii_lowercase[:5], string.capwords('hello big world'),
            time.monotonic() - t0 >= 0.01, time.time() > 1.7e9,
            time.strftime('%Y', time.gmtime(0))]
""", "f", [1, [7, 8], [1, 3, 4, 5], 2, "aaa bbb\nccc", "abcde", "Hello Big World", True, True,
           "1970"]),
    c("module-level-state-and-helpers", """
import math
RATE = 0.2
TABLE = {n: math.sqrt(n) for n in (1, 4, 9)}

def helper(x):
    return x * (1 + RATE)

def f(prices):
    return {'taxed': [round(helper(p), 2) for p in prices], 'roots': list(TABLE.values())}
""", "f", {"taxed": [12.0, 6.0], "roots": [1.0, 2.0, 3.0]}, args=([10, 5],)),
    c("own-objects-getattr-setattr-dict-del", """
class Box:
    pass
def f():
    b = Box()
    setattr(b, 'size', 3)
    b.color = 'red'
    d = {'a': 1, 'b': 2}
    del d['a']
    items = [1, 2, 3]
    del items[0]
    items[0] = 20
    return [getattr(b, 'size'), b.color, d, items, hasattr(b, 'weight')]
""", "f", [3, "red", {"b": 2}, [20, 3], False]),
]
# fmt: on


@pytest.fixture(scope="module")
def sandbox():
    from faas_sandbox import Sandbox

    with Sandbox(Policy.load(DEFAULT_POLICY)) as sb:
        yield sb


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_benign(sandbox: Any, case: Case) -> None:
    outcome = sandbox.call(case.source, case.function, args=case.args, kwargs=case.kwargs)
    assert outcome.ok, (outcome.error_kind, outcome.message)
    assert outcome.value == case.value
    assert outcome.stdout == case.stdout
    assert outcome.error_kind is None


def test_unseeded_random_differs_between_calls(sandbox: Any) -> None:
    """Each child must get fresh random state, not a copy of the forker's."""
    source = "import random\ndef f():\n    return [random.random() for _ in range(4)]\n"
    first, second = sandbox.call(source, "f"), sandbox.call(source, "f")
    assert first.ok and second.ok
    assert first.value != second.value


def test_datetime_c_imports_without_time_in_the_policy() -> None:
    """datetime's C code imports ``time``/``_strptime`` through the sandbox's ``__import__``.

    That path works even when the policy does not allow ``time``, and it does not let user
    code import ``time`` itself.
    """
    from faas_sandbox import ErrorKind, Sandbox

    policy = Policy.from_dict({"imports": {"allowed": ["datetime"]}}, source="<datetime-only>")
    ok_source = """
import datetime
def f():
    d = datetime.datetime(2024, 5, 6, 7, 8)
    parsed = datetime.datetime.strptime('06/05/2024', '%d/%m/%Y')
    return [d.strftime('%Y-%m-%d %H:%M'), parsed.date().isoformat(), d.timetuple()[0]]
"""
    with Sandbox(policy) as sb:
        outcome = sb.call(ok_source, "f")
        assert outcome.ok, (outcome.error_kind, outcome.message)
        assert outcome.value == ["2024-05-06 07:08", "2024-05-06", 2024]
        refused = sb.call("def f():\n    import time\n    return time.time()\n", "f")
        assert refused.error_kind == ErrorKind.FORBIDDEN
        assert "import of 'time' is not allowed" in refused.message
