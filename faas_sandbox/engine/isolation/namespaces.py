"""Namespaces the forker enters once at start, so every child inherits them at no per-call
cost: a new network namespace (only a loopback device, down: no route anywhere, and none of
the host's abstract unix sockets) and a new IPC namespace (no SysV IPC or POSIX queues of the
host). As root, ``unshare`` needs nothing else; without root it needs a user namespace first,
in which the forker maps only its own uid/gid and then gives up every capability it got
there (children inherit none).

A pid namespace would hide the forker's pid too, but needs an extra process level (the first
child becomes its init); the allow-list already denies every syscall that takes another pid,
and Landlock hides /proc, so it is not used.

``unshare``/``capset`` through ctypes and glibc (``os.unshare`` arrived in Python 3.12).
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _unshare(flags: int) -> None:
    if _libc.unshare(ctypes.c_int(flags)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def drop_capabilities() -> None:
    """Empty effective, permitted and inheritable sets of the calling process."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def enter() -> dict[str, Any]:
    """Unshare net and IPC (with a user namespace first when not root); what worked."""
    report: dict[str, Any] = {
        "net_namespace": False,
        "ipc_namespace": False,
        "user_namespace": False,
    }
    flags = CLONE_NEWNET | CLONE_NEWIPC
    try:
        if os.geteuid() == 0:
            _unshare(flags)
        else:
            uid, gid = os.geteuid(), os.getegid()
            _unshare(CLONE_NEWUSER | flags)
            report["user_namespace"] = True
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1\n")
            _write("/proc/self/gid_map", f"{gid} {gid} 1\n")
            drop_capabilities()
    except OSError as exc:
        report["namespace_error"] = str(exc)
        return report
    report["net_namespace"] = report["ipc_namespace"] = True
    return report
