"""The prctl calls a child makes, and the raw seccomp program it loads, through ctypes.

The filter itself (an allow-list, default EPERM) is the table in
:mod:`faas_sandbox.engine.isolation.syscalls`, built once in the forker by
:mod:`faas_sandbox.engine.isolation.seccomp` and kept here as a :class:`Program`, so each child
only does :meth:`Program.install`: ``prctl(PR_SET_NO_NEW_PRIVS, 1)`` then
``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)``.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def prctl(option: int, *args: object) -> None:
    """``prctl(option, *args)`` with unused arguments zero; raises OSError on failure.

    Integer arguments are passed as ``unsigned long``; pointers as ctypes objects.
    """
    values = [ctypes.c_ulong(a) if isinstance(a, int) else a for a in args]
    values += [ctypes.c_ulong(0)] * (4 - len(values))
    if _prctl(ctypes.c_int(option), *values) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def set_name(name: bytes) -> None:
    """Name the process for ps/top (at most 15 bytes); errors are ignored."""
    try:
        prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]))
    except OSError:
        pass


def set_dumpable(flag: bool) -> None:
    prctl(PR_SET_DUMPABLE, int(flag))


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    prctl(PR_SET_PDEATHSIG, int(sig))


def set_no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class Program:
    """A raw seccomp BPF program kept in ctypes memory, ready to load after fork."""

    __slots__ = ("_buf", "_prog", "instructions", "bpf")

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError(f"not a BPF program: {len(bpf)} bytes")
        self.bpf = bpf
        self.instructions = len(bpf) // 8
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(self.instructions, ctypes.addressof(self._buf))

    def install(self) -> None:
        """Install the filter on the calling process (sets no_new_privs first)."""
        set_no_new_privs()
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog))
