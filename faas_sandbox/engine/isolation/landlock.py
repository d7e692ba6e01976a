"""Landlock: a child may open no path at all, bind or connect no TCP port, reach no abstract
unix socket and signal no process outside its own domain.

The forker creates one ruleset with *no rules* that handles every access right this
kernel's Landlock ABI knows (filesystem, TCP, scopes); each child enforces it on itself with
one ``landlock_restrict_self`` call (requires no_new_privs, which the child sets first).
No rule means no path is allowed: not ``/``, not ``/proc``, not its own cwd. Descriptors the
child already holds (its pipes) keep working: Landlock checks opens, not reads.

Raw syscalls through ctypes (Python 3.11 has no binding): 444 ``landlock_create_ruleset``,
446 ``landlock_restrict_self`` (the same numbers on every architecture).
"""

from __future__ import annotations

import ctypes
import os

SYS_CREATE_RULESET = 444
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1 << 0

# handled_access_fs bits by the ABI that introduced them
_FS_V1 = (1 << 13) - 1  # execute, write/read file, read dir, remove/make dir, file, ...
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_NET_TCP = (1 << 0) | (1 << 1)  # ABI 4: bind, connect
_SCOPE_ALL = (1 << 0) | (1 << 1)  # ABI 6: abstract unix sockets, signals

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def abi_version() -> int:
    """The kernel's Landlock ABI (0: not available or disabled at boot)."""
    result = _syscall(
        ctypes.c_long(SYS_CREATE_RULESET),
        None,
        ctypes.c_size_t(0),
        ctypes.c_uint32(CREATE_RULESET_VERSION),
    )
    return max(0, int(result))


def handled(abi: int) -> tuple[int, int, int]:
    """(fs, net, scoped) access masks that ABI ``abi`` can enforce."""
    fs = _FS_V1
    fs |= _FS_REFER if abi >= 2 else 0
    fs |= _FS_TRUNCATE if abi >= 3 else 0
    fs |= _FS_IOCTL_DEV if abi >= 5 else 0
    return fs, (_NET_TCP if abi >= 4 else 0), (_SCOPE_ALL if abi >= 6 else 0)


def create_ruleset(abi: int) -> int:
    """A ruleset fd that denies everything ``abi`` handles (forker; raises OSError)."""
    fs, net, scoped = handled(abi)
    attr = _RulesetAttr(fs, net, scoped)
    fd = _syscall(
        ctypes.c_long(SYS_CREATE_RULESET),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        ctypes.c_uint32(0),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
    return int(fd)


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on the calling process and its future children (raises OSError)."""
    if (
        _syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
        != 0
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
