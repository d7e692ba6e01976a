"""One keep-alive HTTP/1.1 connection to one Colonies node, used by one thread.

Built on the standard library's ``http.client`` only: we open the socket (``connect()``) and
keep a reference to it, so another thread can shut it down to end a blocked long-poll at once
(:meth:`Connection.interrupt`), and we know in which step a request failed:

- ``connect`` (refused, no route, unknown name, connect timeout, TLS handshake): the request
  never left, so it may go to another node whatever it is (:attr:`SendFailed.sent` is False);
- ``send``, ``reply`` or ``body`` (reset, closed, read timeout, a body cut short): it may have
  reached the server; only requests that are safe to repeat may be sent again.

Before a request on a connection kept from earlier, the socket is checked without waiting: a
socket that is readable while idle was closed by the server (it closes connections idle for
120 s; we also reconnect after :data:`IDLE_RECONNECT_S`), so a new one is opened instead of
sending into a closed one. A reply body is read in chunks and at most
:data:`~faas_sandbox.colonies.reply.MAX_REPLY_BYTES` of it (reply.read_capped); a connection
whose reply was not read to its end is closed, never reused.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import time
import weakref
from collections.abc import Iterator

from .nodes import Node
from .reply import read_capped

CONNECT_TIMEOUT_S = 5.0
IDLE_RECONNECT_S = 60.0  # the server closes keep-alive connections idle for 120 s
READ_CHUNK = 256 * 1024
PATH = "/api"


class SendFailed(Exception):
    """A request got no complete reply. ``step`` is where it failed: ``connect``, ``send``,
    ``reply`` (waiting for the status line) or ``body`` (reading the body)."""

    def __init__(self, reason: str, step: str, timeout: bool) -> None:
        super().__init__(reason)
        self.reason, self.step, self.timeout = reason, step, timeout

    @property
    def sent(self) -> bool:
        """Whether the request may have reached the server."""
        return self.step != "connect"


class Connection:
    """One thread's connection to one node; opened on first use, reopened when needed."""

    def __init__(self, node: Node, tls: bool, context: ssl.SSLContext | None = None) -> None:
        self.node = node
        self._http: http.client.HTTPConnection
        if tls:
            self._http = http.client.HTTPSConnection(
                node.host, node.port, timeout=CONNECT_TIMEOUT_S, context=context
            )
        else:
            self._http = http.client.HTTPConnection(node.host, node.port, timeout=CONNECT_TIMEOUT_S)
        self._sock: socket.socket | None = None
        self._used = 0.0
        # A thread's connection goes when the thread does: its socket is closed with it.
        weakref.finalize(self, self._http.close)

    def post(self, body: bytes, read_timeout: float) -> tuple[int, bytes, bool]:
        """(HTTP status, body, truncated) of ``POST /api`` with ``body``; SendFailed if no
        complete reply came."""
        now = time.monotonic()
        if self._sock is not None and (
            now - self._used > IDLE_RECONNECT_S or _readable(self._sock)
        ):
            self.close()  # closed by the server while idle, or about to be
        self._used = now
        if self._sock is None:
            try:
                self._http.connect()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise SendFailed(_reason(exc, "connect"), "connect", _is_timeout(exc)) from exc
            self._sock = self._http.sock
        step = "send"
        try:
            self._sock.settimeout(read_timeout)
            self._http.request("POST", PATH, body)
            step = "reply"
            reply = self._http.getresponse()
            step = "body"
            content, truncated = read_capped(_chunks(reply))
            if not truncated and reply.length:  # a Content-Length the server did not fill
                raise http.client.IncompleteRead(content, reply.length)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendFailed(_reason(exc, step), step, _is_timeout(exc)) from exc
        if truncated or reply.will_close:
            self.close()  # the rest of a body over the cap is never read
        return reply.status, content, truncated

    def interrupt(self) -> None:
        """End a request blocked on this connection now (from any thread)."""
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self._sock = None
        self._http.close()


def _chunks(reply: http.client.HTTPResponse) -> Iterator[bytes]:
    while chunk := reply.read(READ_CHUNK):
        yield chunk


def _readable(sock: socket.socket) -> bool:
    """Whether an idle socket has something to read: the server closed it (EOF), or sent
    bytes nobody asked for; either way it cannot carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError)


_REASONS: tuple[tuple[type[BaseException], str], ...] = (
    (http.client.RemoteDisconnected, "remote end closed"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (BrokenPipeError, "connection aborted"),
    (http.client.IncompleteRead, "reply cut short"),
)


def _reason(exc: BaseException, step: str) -> str:
    """The gist of a failure ("connection refused"), not its whole text."""
    if isinstance(exc, TimeoutError):
        return "timed out" if step == "connect" else "read timed out"
    for kind, text in _REASONS:
        if isinstance(exc, kind):
            return text
    if isinstance(exc, socket.gaierror):
        return str(exc.strerror or exc).lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:200] + "..."
