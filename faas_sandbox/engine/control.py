"""Forker <-> parent control messages: one SOCK_SEQPACKET datagram each, ``u8 op`` + payload.

Parent -> forker: :data:`CONFIG` (the forker's settings, JSON the parent wrote, first),
:data:`CREDIT` (``u32 n``: fork n more children for me).

Forker -> parent: :data:`HELLO` (features, JSON the forker wrote), :data:`CHILD` (``serial
u64, pid u32`` + three fds by SCM_RIGHTS: the child's request pipe (write end), its result
pipe (read end) and a pidfd), :data:`EXIT` (``serial u64, pid u32, status i32, cpu_s f64,
max_rss_bytes u64``: the child is reaped), :data:`LOG` (``u8 level`` + UTF-8 text),
:data:`NOFORK` (UTF-8 text: a credit could not be honoured, fork failed).

No message carries anything a function or its source controls: those bytes go caller ->
child and child -> caller directly (:mod:`faas_sandbox.engine.wire`).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

CONFIG, CREDIT, HELLO, CHILD, EXIT, LOG, NOFORK = 1, 2, 3, 4, 5, 6, 7
CHILD_MSG = struct.Struct(">QI")
EXIT_MSG = struct.Struct(">QIidQ")
CREDIT_MSG = struct.Struct(">I")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_MESSAGE = 1 << 16


def send(sock: socket.socket, op: int, payload: bytes = b"", fds: list[int] | None = None) -> None:
    data = bytes((op,)) + payload
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def send_json(sock: socket.socket, op: int, obj: Any) -> None:
    send(sock, op, json.dumps(obj, separators=(",", ":")).encode())


def send_log(sock: socket.socket, level: str, text: str) -> None:
    send(sock, LOG, bytes((LEVELS.index(level),)) + text.encode("utf-8", "replace")[:60000])


def recv(sock: socket.socket) -> tuple[int, bytes, list[int]] | None:
    """One message: ``(op, payload, fds)``; None at EOF."""
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
    if not data:
        for fd in fds:
            socket.close(fd)
        return None
    return data[0], data[1:], list(fds)
