"""A null executor: assign, then close with the expected output at once. The server's ceiling.

No spec parsing, no code fetch, no sandbox, no log: ``--threads N`` threads each loop
``assign(10)`` -> ``close(pid, [69.8])`` with our fastest client (faas_sandbox.colonies.client:
coincurve signing, one keep-alive session per thread, raw JSON without pydantic). It registers
itself like our executor does (fresh key, added and approved with the colony key, function
``execute`` registered, so each close costs the server the same function-statistics update),
prints one ready line, and removes itself on SIGINT/SIGTERM.

    .venv/bin/python bench/null_executor.py --threads 4 --executortype bench-null-1234
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import EXPECTED, READY, load_stack_env, register_executor
from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable
from faas_sandbox.settings import Settings


def serve(client: ColoniesClient, stop: threading.Event, counts: list[int]) -> None:
    while not stop.is_set():
        try:
            process = client.assign(10)
            if process is not None:
                client.close(process["processid"], EXPECTED)
                counts[0] += 1
        except (ColoniesRefused, ColoniesUnreachable) as exc:
            if stop.is_set():
                return
            print(f"null executor: {exc}", file=sys.stderr, flush=True)
            stop.wait(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--executortype", required=True)
    opts = parser.parse_args()
    load_stack_env()
    settings = Settings.from_env(os.environ)
    assert settings.colony_prvkey, "needs COLONIES_COLONY_PRVKEY"
    member = ColoniesClient.connect(
        settings.host, settings.port, settings.tls, settings.colony_name, settings.require_prvkey()
    )
    name = f"null-{uuid.uuid4().hex[:8]}"
    client = member.with_key(
        register_executor(member, settings.colony_prvkey, name, opts.executortype)
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    counts = [0]
    threads = [
        threading.Thread(target=serve, args=(client, stop, counts), daemon=True)
        for _ in range(opts.threads)
    ]
    for thread in threads:
        thread.start()
    print(READY, name, flush=True)
    while not stop.wait(0.2):
        pass
    client.abort_assigns()
    for thread in threads:
        thread.join(2.0)
    member.remove_executor(name, settings.colony_prvkey)
    print(f"null executor {name}: {counts[0]} calls, unregistered", flush=True)


if __name__ == "__main__":
    main()
