"""What the loopback forward into the Colonies server's network namespace costs per request.

Root, and the stack up with the server in its namespace (``scripts/stack.sh up``). Sends
``GET /health`` (no signature, no database) alternating, request by request, between
``fwd``: a connection to 127.0.0.1:<API port> in our namespace, through the forward, and
``direct``: a connection made inside the server's namespace (the floor: no forward); then the
same with a new connection per request. Prints medians and p90s, and what the hop adds.

    .venv/bin/python bench/forward_hop.py [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from devstack import config, setns

REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"


def connect(netns: str | None) -> socket.socket:
    sock = setns.tcp_socket(netns)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", config.COLONIES_PORT))
    return sock


def health(sock: socket.socket) -> None:
    sock.sendall(REQUEST)
    reply = b""
    while b"\r\n\r\n" not in reply:  # /health answers 200 with an empty body
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("the server closed the connection")
        reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"unexpected reply: {reply[:80]!r}")


def fresh(netns: str | None) -> None:
    with connect(netns) as sock:
        health(sock)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    opts = parser.parse_args()
    netns = config.NETNS
    if os.geteuid() != 0 or netns is None or not setns.path(netns).exists():
        raise SystemExit("needs root and the server in its namespace (scripts/stack.sh up)")
    fwd, direct = connect(None), connect(netns)
    kinds: dict[str, Callable[[], None]] = {
        "fwd": lambda: health(fwd),
        "direct": lambda: health(direct),
        "fwd-new": lambda: fresh(None),
        "direct-new": lambda: fresh(netns),
    }
    for _ in range(50):  # warm-up
        for run in kinds.values():
            run()
    took: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(opts.requests):
        for kind, run in kinds.items():
            started = time.perf_counter()
            run()
            took[kind].append(time.perf_counter() - started)
    median = {kind: statistics.median(values) for kind, values in took.items()}
    for kind, values in took.items():
        values.sort()
        p90 = values[int(len(values) * 0.9)]
        print(f"{kind:11} median {median[kind] * 1e6:7.0f} us   p90 {p90 * 1e6:7.0f} us")
    print(
        f"the hop adds (medians): {(median['fwd'] - median['direct']) * 1e6:.0f} us per "
        f"keep-alive request, {(median['fwd-new'] - median['direct-new']) * 1e6:.0f} us per "
        f"new connection; load average {os.getloadavg()[0]:.1f}"
    )
    fwd.close()
    direct.close()


if __name__ == "__main__":
    main()
