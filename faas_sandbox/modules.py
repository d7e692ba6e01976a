"""Vetted module proxies: what ``import math`` hands to sandboxed code.

Sandboxed code never receives a real module object: many harmless-looking modules expose
``sys``, ``os`` or ``builtins`` as plain public attributes (``json.codecs.sys``,
``re.enum.sys``, ``datetime.sys``, ``uuid.os`` ...). Each proxy exposes an explicit list of
names, checked one by one, and nothing else. Everything here is imported when this module
is imported, before any fork, so a child never imports lazily after dropping privileges.

Deliberately absent: operator (attrgetter walks attributes in C), functools and typing (string
annotations are eval()ed), inspect, gc, importlib, collections.UserString (format walks),
string.Formatter, logging, dataclasses, copy, os, sys, io, socket, subprocess.
"""

from __future__ import annotations

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
            raise AttributeError(f"module {self._faas_name!r} has no attribute {name!r} "
                                 "in the sandbox") from None

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
