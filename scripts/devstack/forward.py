"""A TCP forward from a loopback address into a network namespace (the Colonies server's).

    python3 -m devstack.forward --listen 127.0.0.1:50080 --netns faasdev-50080 \\
        --to 127.0.0.1:50080

Run from ``scripts/``. The forwarder stays in the namespace it starts in (the root one) and
listens there; each outgoing socket is made inside ``--netns`` (a socket belongs to the
namespace it was made in).
Bytes pass both ways unchanged, a half-close is passed on, and no connection has an idle
timeout, so HTTP keep-alive, the assign long-poll and WebSocket subscriptions pass as they are.
A connection whose upstream refuses is reset. Without ``--netns`` it forwards within its own
namespace (tests). Standard library only; SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import signal
import socket
import struct
import sys
import time

from devstack import setns

HIGH_WATER = 1 << 20  # bytes queued for one side before the other side stops being read


class Side(asyncio.Protocol):
    """One end of a forwarded connection; ``peer`` is the other end."""

    def __init__(self, peer: Side | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.got_eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=HIGH_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio sets it only on sockets made with proto=IPPROTO_TCP
            with contextlib.suppress(OSError):  # no Nagle: a request's pieces go on at once
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)

    def eof_received(self) -> bool:
        self.got_eof = True
        peer = self.peer
        if peer is None or peer.transport is None or peer.got_eof:
            self.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
        return True  # the other direction may still carry data

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()

    def close(self) -> None:
        """Close both ends; what is queued for a side is still sent to it first."""
        for side in (self, self.peer):
            if side is not None and side.transport is not None and not side.transport.is_closing():
                side.transport.close()

    # flow control: a side that does not keep up stops the reading from the other side
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class Client(Side):
    """An accepted connection. What it sends before its upstream is connected is kept (up to
    HIGH_WATER, then reading pauses) and passed on once it is."""

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__()
        self.forwarder = forwarder
        self.pending: list[bytes] = []
        self.pending_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        task = asyncio.get_running_loop().create_task(self.forwarder.connect(self))
        self.forwarder.tasks.add(task)  # a strong reference until it is done
        task.add_done_callback(self.forwarder.tasks.discard)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None:
            super().data_received(data)
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        if self.pending_bytes >= HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        if self.peer is None:
            self.got_eof = True  # passed on by link()
            return True
        return super().eof_received()

    def link(self, upstream: Side) -> None:
        assert self.transport is not None and upstream.transport is not None
        self.peer = upstream
        for chunk in self.pending:
            upstream.transport.write(chunk)
        self.pending.clear()
        if self.got_eof and upstream.transport.can_write_eof():
            upstream.transport.write_eof()
        self.transport.resume_reading()


class Forwarder:
    def __init__(self, upstream: tuple[str, int], netns: str | None) -> None:
        self.upstream, self.netns = upstream, netns
        self.failures = 0
        self.last_report = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self, client: Client) -> None:
        assert client.transport is not None
        loop = asyncio.get_running_loop()
        try:
            sock = setns.tcp_socket(self.netns)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, self.upstream)
            except BaseException:
                sock.close()
                raise
            _, upstream = await loop.create_connection(lambda: Side(peer=client), sock=sock)
        except OSError as err:
            self._report(err)
            if not client.transport.is_closing():
                accepted = client.transport.get_extra_info("socket")
                with contextlib.suppress(OSError):  # a reset, as a refused connection gets
                    accepted.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                client.transport.abort()
            return
        if client.transport.is_closing():  # the client left while we connected
            upstream.close()
            return
        client.link(upstream)

    def _report(self, err: OSError) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self.last_report >= 10:  # one line per 10 s while the upstream is down
            print(
                f"forward: upstream {self.upstream[0]}:{self.upstream[1]}: {err} "
                f"({self.failures} refused so far)",
                flush=True,
            )
            self.last_report = now


def address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def serve(listen: socket.socket, upstream: tuple[str, int], netns: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    forwarder = Forwarder(upstream, netns)
    server = await loop.create_server(lambda: Client(forwarder), sock=listen, backlog=1024)
    await stop.wait()
    server.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="devstack.forward", description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--to", type=address, required=True)
    parser.add_argument("--netns", help="connect from inside this named network namespace")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    listen = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen.bind(args.listen)
    listen.listen(1024)
    listen.setblocking(False)
    if args.netns:
        setns.tcp_socket(args.netns).close()  # fail now if the namespace cannot be entered
    print(
        f"forward: {args.listen[0]}:{args.listen[1]} -> {args.to[0]}:{args.to[1]}"
        + (f" in network namespace {args.netns}" if args.netns else ""),
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listen, args.to, args.netns))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
