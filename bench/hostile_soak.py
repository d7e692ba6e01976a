"""Hostile mix next to benign calls on the local stack: benign latency, executor memory,
nothing lost (the mix itself: tests/integration/hostile_mix.py).

    .venv/bin/python bench/hostile_soak.py [--seconds 60] [--benign-threads 2] [--concurrency 4]

Starts its own executor (unique type) whose configured store is a loopback stand-in; needs the
stack (``scripts/stack.sh up``). Exit status 1 when a call was lost or ended with a kind other
than expected, or the executor died.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests" / "integration")]

import hostile_mix  # noqa: E402  (tests/integration)
from _common import load_stack_env  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per phase (3 phases)")
    parser.add_argument("--benign-threads", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--kinds",
        default=",".join(hostile_mix.KINDS),
        help="hostile kinds to run (comma-separated)",
    )
    args = parser.parse_args()
    load_stack_env()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "executor.log"
        result = hostile_mix.run(
            log,
            args.seconds,
            args.benign_threads,
            args.concurrency,
            tuple(k for k in args.kinds.split(",") if k),
        )
        for line in hostile_mix.summary(result):
            print(line)
        for item in (result.lost + result.unexpected)[:20]:
            print("  ", item)
        bad = result.lost or result.unexpected or not result.executor_alive
        if bad:
            print(log.read_text(errors="replace")[-3000:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
