"""Named network namespaces (``/run/netns/NAME``, made by ``ip netns add``) from Python.

setns(2) through ctypes (``os.setns`` needs Python 3.12). A socket belongs to the namespace
its creating thread was in, whatever that thread does afterwards, so a process can listen in
one namespace and connect in another. Standard library only: devstack/forward.py uses it.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_OWN = "/proc/thread-self/ns/net"


def path(name: str) -> Path:
    if not NAME.match(name):
        raise ValueError(f"not a network namespace name: {name!r}")
    return NETNS_DIR / name


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` (threads it starts later follow)."""
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """The calling thread in namespace ``name`` for the block, then back where it was."""
    home = os.open(_OWN, os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def tcp_socket(name: str | None) -> socket.socket:
    """A TCP socket of namespace ``name`` (None: the caller's own)."""
    if name is None:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with inside(name):
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def runs_in(pid: int, name: str | None) -> bool:
    """Whether process ``pid`` is in namespace ``name`` (None: the caller's own namespace)."""
    try:
        theirs = os.stat(f"/proc/{pid}/ns/net")
        ours = os.stat(path(name) if name else _OWN)
    except OSError:
        return False
    return (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
