"""The Colonies transport: one signed RPC in, its decoded reply (or a classified error) out.

:class:`Transport` is ours end to end (no client library's private hooks):

- each thread has its own keep-alive connection (colonies.connection), opened on first use;
- timeouts: connect 5 s; read 30 s, or an assign long-poll's own ``timeout`` plus 15 s;
- ``host`` may list the nodes of a Colonies cluster (colonies.nodes): the client talks to one
  at a time and moves on when it fails; what may be re-sent after a failure is decided here
  from the step that failed (a request that never left goes anywhere; one that may have
  arrived is repeated only if harmless: never a submit, and never an assign, whose caller
  looks for an assignment whose reply was lost);
- requests are signed with coincurve (colonies.signing); replies are read within limits and
  decoded by colonies.reply, which also classifies server errors.

Failures come as :class:`~faas_sandbox.errors.ColoniesUnreachable` (no answer: refused, reset,
timed out, a proxy's 5xx, or the server answering with its *database's* or etcd's connection
error; worth retrying later) or :class:`~faas_sandbox.errors.ColoniesRefused` (the server
decided; its message and HTTP status are kept), or
:class:`~faas_sandbox.errors.ReplyUnreadable` (an answer too large, deep or malformed).
"""

from __future__ import annotations

import ssl
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ColoniesRefused, ColoniesUnreachable
from .connection import Connection, SendFailed
from .nodes import NodeList, parse_nodes
from .reply import NO_QUORUM, decode_reply
from .signing import request_body

ASSIGN = "assignprocessmsg"
READ_TIMEOUT_S = 30.0
LONG_POLL_SLACK_S = 15.0
# Requests that must not run twice: a second submit is a second process, a second addfile a
# second revision. Everything else we send is a read, or a change whose repeat is refused or
# harmless (close, fail, log, register, approve, remove).
NOT_IDEMPOTENT = frozenset({"submitfuncspecmsg", "submitworkflowspecmsg", "addfilemsg"})


class Transport:
    """Signed Colonies RPCs over per-thread keep-alive connections, with node failover."""

    def __init__(self, host: str, port: int, tls: bool = False) -> None:
        """``host`` names one node or several (see faas_sandbox.colonies.nodes)."""
        self.nodes = NodeList(parse_nodes(host, port))
        self.tls = tls
        self._urls = tuple(node.url(tls) for node in self.nodes.nodes)
        self._context = ssl.create_default_context() if tls else None
        self._local = threading.local()
        self._by_thread: weakref.WeakValueDictionary[int, Connection] = (
            weakref.WeakValueDictionary()
        )
        self._by_thread_lock = threading.Lock()
        self.aborting = False  # set at shutdown: a failed long-poll is then no node failure

    @property
    def url(self) -> str:
        """The ``/api`` URL of the node in use."""
        return self._urls[self.nodes.current()[0]]

    def pubsub_url(self) -> tuple[int, str]:
        """(node index, WebSocket URL) of the node in use, for subscriptions."""
        index, node = self.nodes.current()
        return index, node.url(self.tls, "/pubsub", ws=True)

    def node_failed(self, index: int, reason: str) -> None:
        """The node at ``index`` failed (here or in a subscription): use the next one."""
        self.nodes.failed(index, reason)

    def interrupt(self, thread_ids: Iterable[int]) -> None:
        """Shut down these threads' connections, so their blocked requests end now."""
        with self._by_thread_lock:
            conns = [self._by_thread.get(ident) for ident in thread_ids]
        for conn in conns:
            if conn is not None:
                conn.interrupt()

    def close(self) -> None:
        """Close the calling thread's connection (it reopens on the next request)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def _connection(self, index: int) -> Connection:
        node = self.nodes.nodes[index]
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.node is not node:
            if conn is not None:
                conn.close()
            conn = Connection(node, self.tls, self._context)
            self._local.conn = conn
            with self._by_thread_lock:
                self._by_thread[threading.get_ident()] = conn
        return conn

    def call(self, msg: Mapping[str, Any], prvkey: str) -> Any:
        """Send one message (``msg["msgtype"]`` names it) signed with ``prvkey``; the reply's
        payload value."""
        body = request_body(msg, prvkey)
        kind = msg["msgtype"]
        read, resend = READ_TIMEOUT_S, kind not in NOT_IDEMPOTENT
        if kind == ASSIGN:
            read, resend = max(float(msg.get("timeout", 0)), 0.0) + LONG_POLL_SLACK_S, False
        # One round over the nodes; a single node gets a second try when that is safe.
        tries = max(len(self.nodes), 2)
        for attempt in range(1, tries + 1):
            index, _node = self.nodes.current()
            try:
                status, content, truncated = self._connection(index).post(body, read)
                break
            except SendFailed as exc:
                where = f"{self._urls[index]}: {exc.reason}"
                if self.aborting and kind == ASSIGN:
                    raise ColoniesUnreachable(where) from exc
                self.node_failed(index, exc.reason)
                again = not exc.sent or resend
                if len(self.nodes) == 1:  # the same node again: only when the connection
                    # failed before any reply came (a keep-alive connection the server closed)
                    again = again and not exc.timeout and exc.step != "body"
                if attempt == tries or not again:
                    raise ColoniesUnreachable(where) from exc
        try:
            result = decode_reply(content, status, truncated)
        except ColoniesRefused:
            self.nodes.answered()
            raise
        except ColoniesUnreachable as exc:
            if NO_QUORUM in str(exc):  # this node cannot reach an etcd majority; another may
                self.node_failed(index, "no etcd quorum")
            raise
        self.nodes.answered()
        return result
