"""The Colonies nodes a client may talk to, and moving on when one fails.

``COLONIES_SERVER_HOST`` names one node or a cluster: comma-separated entries, each ``host`` or
``host:port`` (``[v6addr]:port`` for IPv6); ``COLONIES_SERVER_PORT`` is the port of entries
without one. Nodes of one Colonies cluster share one database, so any node serves any request.

A client talks to ONE node at a time, the first listed until it fails, then the next (round
robin). It does not go back on its own: a node that failed may be failing again soon, and
staying put keeps keep-alive connections warm. List the nodes in a different order on
different hosts to spread clients over the cluster.

What a failure allows (the transport decides, from the step that failed: colonies.connection):

- the request never left (connection refused, connect timeout, no route, unknown name): any
  request may go to the next node at once, a submit too;
- it may have reached the server (reset, aborted, read timeout): the client moves to the next
  node, but only requests that are safe to repeat are re-sent there. A submit is not (it could
  run twice), and neither is a long-poll assign: its caller decides (the executor looks for
  calls assigned to it whose reply was lost).

A switch is one WARNING line, ``colonies node A failed (reason); switching to B``; while no
node answers at all (the whole cluster down, or this host cut off) further switches are only
counted, and the first answer after them says how many there were.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

MAX_NODES = 64


@dataclass(frozen=True, slots=True)
class Node:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, tls: bool, path: str = "/api", ws: bool = False) -> str:
        scheme = ("wss" if tls else "ws") if ws else ("https" if tls else "http")
        return f"{scheme}://{self}{path}"


def parse_nodes(text: str, default_port: int) -> tuple[Node, ...]:
    """``"a, b:50282, [::1]:50283"`` -> nodes; ValueError naming the bad entry."""
    nodes: list[Node] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError(f"empty entry in {text!r}")
        host, port_text = entry, ""
        if entry.startswith("["):
            close = entry.find("]")
            if close < 0 or (close + 1 < len(entry) and entry[close + 1] != ":"):
                raise ValueError(f"bad IPv6 entry {entry!r}: expected [address] or [address]:port")
            host, port_text = entry[1:close], entry[close + 2 :]
        elif entry.count(":") == 1:
            host, port_text = entry.split(":")
        elif ":" in entry:
            raise ValueError(f"bad entry {entry!r}: write IPv6 addresses as [address]:port")
        if not host or any(c.isspace() or c in "/?#@" for c in host):
            raise ValueError(f"bad host in {entry!r}")
        port = default_port
        if port_text or entry.endswith(":"):
            if not port_text.isdigit():
                raise ValueError(f"bad port in {entry!r}")
            port = int(port_text)
        if not 0 < port < 65536:
            raise ValueError(f"port out of range in {entry!r}")
        node = Node(host, port)
        if node in nodes:
            raise ValueError(f"{node} is listed twice")
        nodes.append(node)
    if len(nodes) > MAX_NODES:
        raise ValueError(f"{len(nodes)} nodes listed; at most {MAX_NODES}")
    return tuple(nodes)


class NodeList:
    """The node in use, shared by every thread of one client; thread-safe."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        if not nodes:
            raise ValueError("no Colonies node given")
        self.nodes = tuple(nodes)
        self._index = 0
        self._lock = threading.Lock()
        self.switches = 0
        self._answered = True  # a node answered since the last switch
        self._quiet = 0  # switches not logged because no node answered in between

    def __len__(self) -> int:
        return len(self.nodes)

    def current(self) -> tuple[int, Node]:
        index = self._index
        return index, self.nodes[index]

    def answered(self) -> None:
        """A request got an answer from the node in use (called on every reply: cheap)."""
        if not self._answered:
            with self._lock:
                quiet, self._quiet, self._answered = self._quiet, 0, True
                node = self.nodes[self._index]
            if quiet:
                log.warning(
                    "colonies node %s answers (after %d more switches while no node answered)",
                    node,
                    quiet,
                )

    def failed(self, index: int, reason: str) -> bool:
        """The node at ``index`` failed: move to the next one unless another thread already
        did (one switch per failure of the node in use). One log line per switch after a node
        answered; while none answers (all down, or this host cut off), switches are counted,
        not logged. True when the node in use is now another one than ``index``."""
        if len(self.nodes) == 1:
            return False
        with self._lock:
            if index != self._index:
                return True
            self._index = (index + 1) % len(self.nodes)
            self.switches += 1
            new = self.nodes[self._index]
            loud, self._answered = self._answered, False
            if not loud:
                self._quiet += 1
        if loud:
            log.warning(
                "colonies node %s failed (%s); switching to %s", self.nodes[index], reason, new
            )
        return True
