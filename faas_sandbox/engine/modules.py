r"""Vetted module proxies: what ``import math`` hands to sandboxed code.

Sandboxed code never receives a real module object: many harmless-looking modules expose
``sys``, ``os`` or ``builtins`` as plain public attributes (``json.codecs.sys``,
``re.enum.sys``, ``datetime.sys``, ``uuid.os`` ...). Each proxy exposes an explicit list of
names, checked one by one, and nothing else. Everything here is imported when this module
is imported, before any fork, so a child never imports lazily after dropping privileges.

Why each module is here (reviewed 2026-11 against the published RestrictedPython escape families; a
crawl of every public attribute reachable from every exposed name, five levels deep, finds no
module, frame, code or traceback object, no real builtin and no mutable container):

* math, cmath, itertools, heapq, bisect, unicodedata: C functions and constants over
  numbers, iterables and characters; nothing that names an attribute. Big work
  (``math.factorial(10**7)``, ``itertools.count()``) is bounded by the CPU and memory limits.
* json: only ``dumps``/``loads``/``JSONDecodeError``, never the module (``json.codecs.sys``).
  ``cls=``/``default=``/``object_hook=`` call back into restricted code only.
* re: compile/search/sub and the flags, never the module (``re.enum.sys``). A catastrophic
  pattern is C-level CPU, stopped by RLIMIT_CPU; templates (``\g<1>``) name groups, not
  attributes.
* random: the module-level functions and ``Random`` (no ``SystemRandom``). The forker's
  state is reseeded in every child by CPython's own fork hook.
* statistics, fractions, decimal, datetime: value types and pure functions, never the module
  (``statistics.sys``, ``fractions.sys``, ``datetime.sys``). ``decimal.getcontext()`` is the
  per-thread context of a child that dies after the call (guards.py lets code set its
  fields). ``datetime``'s C code imports ``time`` and ``_strptime`` through the sandbox's
  ``__import__`` (strftime, strptime, astimezone); those names are in ``C_IMPORTS``, both are
  imported here before any fork, and the guard lets only that C path through (see
  ``guards.guarded_import``).
* collections: ``Counter``, ``defaultdict``, ``deque``, ``OrderedDict`` only; not
  ``UserString`` (its ``format`` reopens CVE-2023-41039) and not ``namedtuple``.
* string: the constants and ``capwords`` only; not ``Formatter`` (CVE-2021-32807,
  CVE-2024-47532, CVE-2026-76825) and not ``Template``.
* textwrap: Python helpers over strings.
* time: clocks, ``gmtime``, ``strftime`` and ``sleep`` (a sleep costs no CPU and ends at the
  wall-clock limit). The clocks are a timing side channel (see docs/threat-model.md).
* hashlib: named OpenSSL constructors only, no ``hashlib.new(name)``.
* base64: encoders and decoders of bytes.
* uuid: ``uuid4``/``uuid3``/``uuid5``/``UUID`` and the namespaces; not ``uuid1``/``getnode``,
  which may read files and run ``ifconfig``, and never the module (``uuid.os``).

Deliberately absent: operator (attrgetter walks attributes in C), functools and typing (string
annotations are eval()ed), inspect, gc, importlib, collections.UserString (format walks),
string.Formatter, logging, dataclasses, copy, os, sys, io, socket, subprocess.
"""

from __future__ import annotations

import _strptime  # noqa: F401  (datetime.strptime imports it from C; see C_IMPORTS)
import base64
import bisect
import cmath
import collections
import datetime
import decimal
import fractions
import hashlib
import heapq
import itertools
import json
import math
import random
import re
import statistics
import string
import textwrap
import time
import unicodedata
import uuid
from types import MappingProxyType
from typing import Any

from .. import policy


def _public(module: Any, exclude: frozenset[str] = frozenset()) -> tuple[str, ...]:
    return tuple(
        name
        for name in dir(module)
        if not name.startswith("_")
        and name not in exclude
        and not isinstance(getattr(module, name), type(math))  # never a module object
    )


# name -> (module, exposed attribute names). Every list is explicit or derived from a module
# written in C whose public names are plain functions and constants.
# A table, one entry per row as laid out by hand: ruff format leaves it alone.
# fmt: off
_SPECS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "math": (math, _public(math)),
    "cmath": (cmath, _public(cmath)),
    "json": (json, ("dumps", "loads", "JSONDecodeError")),
    "re": (re, ("compile", "search", "match", "fullmatch", "split", "findall", "finditer",
                "sub", "subn", "escape", "purge", "error", "Pattern", "Match",
                "A", "ASCII", "I", "IGNORECASE", "M", "MULTILINE", "S", "DOTALL",
                "X", "VERBOSE", "U", "UNICODE")),
    "random": (random, ("random", "uniform", "randint", "randrange", "choice", "choices",
                        "shuffle", "sample", "gauss", "normalvariate", "expovariate",
                        "triangular", "betavariate", "seed", "getrandbits", "Random")),
    "statistics": (statistics, ("mean", "fmean", "geometric_mean", "harmonic_mean", "median",
                                "median_low", "median_high", "median_grouped", "mode",
                                "multimode", "quantiles", "pstdev", "pvariance", "stdev",
                                "variance", "covariance", "correlation", "linear_regression",
                                "NormalDist", "StatisticsError")),
    "datetime": (datetime, ("date", "time", "datetime", "timedelta", "timezone", "MINYEAR",
                            "MAXYEAR", "UTC")),
    "decimal": (decimal, ("Decimal", "getcontext", "localcontext", "Context",
                          "InvalidOperation", "DivisionByZero", "ROUND_HALF_UP",
                          "ROUND_HALF_EVEN", "ROUND_DOWN", "ROUND_UP", "ROUND_FLOOR",
                          "ROUND_CEILING")),
    "fractions": (fractions, ("Fraction",)),
    "itertools": (itertools, _public(itertools)),
    "heapq": (heapq, ("heappush", "heappop", "heapify", "heapreplace", "heappushpop",
                      "nlargest", "nsmallest", "merge")),
    "bisect": (bisect, ("bisect", "bisect_left", "bisect_right", "insort", "insort_left",
                        "insort_right")),
    "collections": (collections, ("Counter", "defaultdict", "deque", "OrderedDict")),
    "string": (string, ("ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits",
                        "hexdigits", "octdigits", "punctuation", "printable", "whitespace",
                        "capwords")),
    "textwrap": (textwrap, ("wrap", "fill", "dedent", "indent", "shorten")),
    "hashlib": (hashlib, ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b",
                          "blake2s", "sha3_256", "sha3_512")),
    "base64": (base64, ("b64encode", "b64decode", "urlsafe_b64encode", "urlsafe_b64decode",
                        "b32encode", "b32decode", "b16encode", "b16decode")),
    "time": (time, ("time", "time_ns", "monotonic", "perf_counter", "sleep", "gmtime",
                    "strftime")),
    "unicodedata": (unicodedata, _public(unicodedata, frozenset({"ucd_3_2_0"}))),
    "uuid": (uuid, ("uuid4", "UUID", "NAMESPACE_DNS", "NAMESPACE_URL", "uuid5", "uuid3")),
}
# fmt: on


class ModuleProxy:
    """A read-only stand-in for a module: only its listed names, never the module object."""

    __slots__ = ("_faas_name", "_faas_attrs")

    def __init__(self, name: str, attrs: dict[str, Any]) -> None:
        object.__setattr__(self, "_faas_name", name)
        object.__setattr__(self, "_faas_attrs", MappingProxyType(dict(attrs)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._faas_attrs[name]
        except KeyError:
            raise AttributeError(
                f"module {self._faas_name!r} has no attribute {name!r} in the sandbox"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"module {self._faas_name!r} is read-only in the sandbox")

    __delattr__ = __setattr__  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<sandboxed module {self._faas_name!r}>"


def _build() -> dict[str, ModuleProxy]:
    proxies = {}
    for name, (module, attrs) in _SPECS.items():
        values = {}
        for attr in attrs:
            value = getattr(module, attr)
            if isinstance(value, type(math)):
                raise RuntimeError(f"refusing to expose module {name}.{attr}")
            values[attr] = value
        proxies[name] = ModuleProxy(name, values)
    return proxies


PROXIES: MappingProxyType[str, ModuleProxy] = MappingProxyType(_build())
MODULE_NAMES: frozenset[str] = frozenset(PROXIES)
if MODULE_NAMES != policy.MODULE_NAMES:  # the light list policies use must match
    raise RuntimeError(f"policy.MODULE_NAMES is out of date: proxies {sorted(MODULE_NAMES)}")
# Modules that C code in an exposed module imports through PyImport_Import, i.e. through the
# sandbox's __import__ (datetime: strftime/timetuple/astimezone -> time, strptime ->
# _strptime). The guard lets only that C call through, and returns None to it.
C_IMPORTS: frozenset[str] = frozenset({"time", "_strptime"})
