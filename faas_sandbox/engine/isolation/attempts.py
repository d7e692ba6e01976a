"""The harness of the selftest's attacker probes: raw syscalls and the record of attempts.

A probe tries every route to one goal; :class:`Attempts` records each one. A probe is denied
only if no attempt worked; an errno that shows the syscall ran and only the probe's
deliberately minimal arguments were bad (EINVAL, EFAULT, EBADF) counts as *reached*, since no
layer stopped it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.prctl.restype = ctypes.c_int

# x86_64 syscall numbers of the raw attempts (the wrappers are tried too); elsewhere the raw
# attempts are skipped and say so
RAW = platform.machine() == "x86_64"
NR = {
    "fork": 57,
    "vfork": 58,
    "clone": 56,
    "clone3": 435,
    "ptrace": 101,
    "kill": 62,
    "tgkill": 234,
    "pidfd_open": 434,
    "pidfd_send_signal": 424,
    "process_vm_readv": 310,
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "chroot": 161,
    "pivot_root": 155,
    "openat": 257,
    "open": 2,
    "openat2": 437,
    "getdents64": 217,
    "memfd_create": 319,
    "bpf": 321,
    "perf_event_open": 298,
    "io_uring_setup": 425,
    "userfaultfd": 323,
    "keyctl": 250,
    "execveat": 322,
    "sched_getaffinity": 204,
    "getpgid": 121,
    "getsid": 124,
    "getppid": 110,
    "socket": 41,
    "socketpair": 53,
    "prlimit64": 302,
}


# errnos that mean the syscall ran and only our (deliberately minimal) arguments were bad:
# no layer stopped it, so the attempt counts as not denied
_REACHED = {errno.EINVAL, errno.EFAULT, errno.EBADF}


class Attempts:
    """Records each attempt: ``worked`` if it returned (or got past every layer and failed
    only on its arguments), the errno/exception text if it was refused."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.worked = False

    def __call__(self, label: str, fn: Callable[[], _T]) -> _T | None:
        try:
            value = fn()
        except _Skipped:
            self.lines.append(f"{label}: skipped (raw syscall numbers are for x86_64)")
            return None
        except OSError as exc:
            text = os.strerror(exc.errno) if exc.errno else str(exc)
            if exc.errno in _REACHED:
                self.worked = True
                text = f"REACHED the kernel ({text})"
            self.lines.append(f"{label}: {text}")
            return None
        except Exception as exc:  # noqa: BLE001 - any refusal is a refusal
            self.lines.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        self.worked = True
        self.lines.append(f"{label}: WORKED ({str(value)[:80]})")
        return value

    def raw(self, label: str, name: str, *args: Any) -> int | None:
        """A raw syscall; negative results become OSError(errno)."""
        return self(label, lambda: check(syscall(name, *args)))

    def report(self) -> dict[str, Any]:
        return {"denied": not self.worked, "detail": "; ".join(self.lines)}


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


class _Skipped(Exception):
    pass


def syscall(name: str, *args: Any) -> int:
    """The raw syscall ``name`` (x86_64 numbers; elsewhere the attempt is skipped)."""
    if not RAW:
        raise _Skipped
    return int(libc.syscall(ctypes.c_long(NR[name]), *args))
