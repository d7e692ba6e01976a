"""The names of the vetted modules, without loading them (``modules.py`` builds the proxies and
checks at import that it builds exactly these). Policies and the HTTP front end need only the
names, so they never import the engine's modules."""

from __future__ import annotations

MODULE_NAMES: frozenset[str] = frozenset({
    "base64", "bisect", "cmath", "collections", "datetime", "decimal", "fractions", "hashlib",
    "heapq", "itertools", "json", "math", "random", "re", "statistics", "string", "textwrap",
    "time", "unicodedata", "uuid",
})
