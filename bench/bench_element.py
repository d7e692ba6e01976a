"""The caller's shape check of a child's output element (``element.well_formed``), on forged
1 MiB elements (run by ``make bench``; not a test).

The executor parent runs this check on bytes a tenant's child chose, in a process every call
shares, so its cost per byte is what one tenant can take from the others. Floor, measured in
the same run: one ``bytes.count`` scan over the same bytes (a single pass at C speed).

    .venv/bin/python bench/bench_element.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faas_sandbox.element import well_formed

# How the check was first written: one regex, one match object per escape (the unit tests
# keep it as the oracle the fast check must agree with); timed here for comparison.
ONE_REGEX = re.compile(rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"')
MIB = 1 << 20
CASES = {
    "plain text": b'"' + b"a" * MIB + b'"',
    "\\n escapes": b'"' + b"\\n" * (MIB // 2) + b'"',
    "\\u escapes": b'"' + b"\\u0041" * (MIB // 6) + b'"',
    "escaped backslashes": b'"' + b"\\\\" * (MIB // 2) + b'"',
    "escaped quotes": b'"' + b'\\"' * (MIB // 2) + b'"',
    "forged: bad escape at the end": b'"' + b"\\n" * (MIB // 2) + b'\\q"',
    "forged: escaped closing quote": b'"' + b"a\\n" * (MIB // 3) + b'\\"',
}


def best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    opts = ap.parse_args()
    print(
        "\ncaller's element check (element.well_formed) on forged ~1 MiB elements, best of",
        opts.repeat,
    )
    print(
        f"{'element':32s} | {'MiB':>4s} | {'ok':>5s} | {'check ms':>8s} | {'floor ms':>8s} | "
        f"{'ratio':>6s} | one-regex ms"
    )
    print("-" * 92)
    for name, data in CASES.items():
        ok = well_formed(data)
        check = best_ms(lambda data=data: well_formed(data), opts.repeat)
        floor = best_ms(lambda data=data: data.count(b"\\"), opts.repeat)
        old = best_ms(lambda data=data: ONE_REGEX.fullmatch(data), opts.repeat)
        print(
            f"{name:32s} | {len(data) / MIB:4.2f} | {ok!s:>5s} | {check:8.2f} | {floor:8.2f} | "
            f"{check / floor:5.1f}x | {old:8.2f}"
        )
    print("floor: one bytes.count over the same bytes; one-regex: the check as first written.")


if __name__ == "__main__":
    main()
