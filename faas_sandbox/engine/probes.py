"""Trusted test targets: they run in a fully isolated child *in place of* user code.

``Sandbox._probe(name, limits)`` sends a probe name instead of source; the child runs the
probe after isolation and rlimits, exactly where the function would run, and returns its
value like a function result. They prove what isolation looks like from inside (identity,
syscalls) and exercise every death the classifier must name (SIGSEGV, exit codes, a
malformed or flooding result pipe, a SIGKILL we did not send). Only the parent can ask for
a probe; user code cannot reach them. Imported by the forker (via child) before any fork.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import wire
from .isolation import attacks


def _is_open(fd: int) -> bool:
    """Whether ``fd`` is open, using only what the lockdown allows (0-byte read/write)."""
    for op in (lambda: os.read(fd, 0), lambda: os.write(fd, b"")):
        try:
            op()
            return True
        except OSError as exc:
            if exc.errno != errno.EBADF:
                return True
    return False


def _probe_identity(ctx: dict[str, Any]) -> dict[str, Any]:
    """What a locked-down child can learn about itself. /proc is out of reach from inside
    (Landlock, no open): tests read /proc/PID/status of a waiting probe from outside."""
    return {
        "pid": os.getpid(),
        "pgid": os.getpgid(0),
        "sid": os.getsid(0),
        "uid": os.getresuid(),
        "gid": os.getresgid(),
        "groups": os.getgroups(),
        "env": dict(os.environ),
        "open_fds": [fd for fd in range(64) if _is_open(fd)],
        "result_fd": ctx.get("result_fd"),
        "rlimits": {
            name: resource.getrlimit(getattr(resource, name))
            for name in (
                "RLIMIT_CPU",
                "RLIMIT_AS",
                "RLIMIT_FSIZE",
                "RLIMIT_NOFILE",
                "RLIMIT_NPROC",
                "RLIMIT_CORE",
            )
        },
    }


def _attempt(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return "allowed"


def _fork_and_reap() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _probe_syscalls(ctx: dict[str, int]) -> dict[str, str]:
    return {
        "fork": _attempt(_fork_and_reap),
        "execv": _attempt(lambda: os.execv("/bin/true", ["true"])),
        "socket": _attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
        "socket_unix": _attempt(lambda: socket.socket(socket.AF_UNIX).close()),
        "kill_forker": _attempt(lambda: os.kill(os.getppid(), 0)),
        "prlimit_other": _attempt(lambda: resource.prlimit(1, resource.RLIMIT_NOFILE)),
        "raise_nofile": _attempt(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))),
        "write_cwd": _attempt(lambda: open("probe.txt", "w").close()),
        "setuid_root": _attempt(lambda: os.setuid(0)),
    }


def _probe_rlimit_rules(ctx: dict[str, Any]) -> dict[str, Any]:
    """What the kernel lets a locked-down child do with its own RLIMIT_NOFILE (soft == hard
    already): lower it, raise it back, set soft above hard, touch it by its pid."""
    which = resource.RLIMIT_NOFILE
    start = resource.getrlimit(which)
    hard = start[1]
    return {
        "start": start,
        "lower": _attempt(lambda: resource.setrlimit(which, (hard - 1, hard - 1))),
        "raise_hard": _attempt(lambda: resource.setrlimit(which, (hard, hard))),
        "soft_above_hard": _attempt(lambda: resource.setrlimit(which, (hard, hard - 1))),
        "by_own_pid": _attempt(lambda: resource.prlimit(os.getpid(), which, (hard - 2, hard - 2))),
        "end": resource.getrlimit(which),
    }


def _probe_rss(ctx: dict[str, int]) -> int:
    block = bytearray(48 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return len(block)


def _probe_flood(ctx: dict[str, int]) -> None:
    chunk = b"x" * 65536
    while True:
        os.write(ctx["result_fd"], chunk)


def _probe_garbage(ctx: dict[str, int]) -> None:
    os.write(ctx["result_fd"], wire.frame(wire.RESULT, b'{"ok": "maybe"}'))
    os._exit(0)


def _probe_forged_value(ctx: dict[str, Any]) -> None:
    """What a child that escaped the language can send: a well-formed ``ok`` RESULT frame
    whose value is not JSON (50,000 opening brackets). The engine passes value bytes on
    untouched, so whoever decodes them must fail the call, not itself."""
    os.write(ctx["result_fd"], wire.encode_result(0, 0, 0.0, 0, b"[" * 50_000, b"", b""))
    os._exit(0)


def _probe_block_signals_and_spin(ctx: dict[str, Any]) -> None:
    """An escaped child blocks every signal (rt_sigprocmask is allowed: glibc needs it), then
    spins: the kernel's SIGKILL at the CPU limit (or the wall clock) must still end it as
    `cpu` (redteam)."""
    mask = (ctypes.c_ulong * 16)(0xFFFF_FFFF_FFFF_FFFF)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(14), 0, mask, None, 8) != 0:  # x86_64 rt_sigprocmask
        raise OSError(ctypes.get_errno(), "rt_sigprocmask")
    while True:
        pass


def _probe_x32_socket(ctx: dict[str, Any]) -> Any:
    """socket(AF_INET) by its x32 number (0x40000000 | 41): the x86_64 allow-list must not
    be sidestepped through the other ABI of the same architecture (redteam)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return [libc.syscall(ctypes.c_long(0x40000000 | 41), 2, 1, 0), ctypes.get_errno()]


def _probe_syscall_sweep(ctx: dict[str, Any]) -> dict[str, list[int]]:
    """Every x86_64 syscall number in 0..462 that is not in ``skip`` (the allow-list, and the
    numbers a test wants left out), with all-zero arguments: ``{nr: [result, errno]}`` for
    each that did not fail with EPERM (redteam). Safe only because the filter refuses them
    before they run; the test skips process-creating and blocking numbers in case it breaks."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    skip = set(ctx["args"]["skip"])
    found = {}
    for nr in range(463):
        if nr in skip:
            continue
        ctypes.set_errno(0)
        result = libc.syscall(ctypes.c_long(nr), 0, 0, 0, 0, 0, 0)
        if not (result == -1 and ctypes.get_errno() == errno.EPERM):
            found[str(nr)] = [result, ctypes.get_errno()]
    return found


def _probe_selfkill(ctx: dict[str, int]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)  # needs a Sandbox without seccomp
    time.sleep(5)


# ctx: the child's numbers (result_fd, ...) and, for the attacker probes, their "args"
PROBES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "identity": _probe_identity,
    "modules": lambda ctx: sorted(sys.modules),  # what a child inherited from the forker
    "syscalls": _probe_syscalls,
    "rss": _probe_rss,
    "rlimit_rules": _probe_rlimit_rules,
    "segv": lambda ctx: ctypes.string_at(0),
    "exit3": lambda ctx: os._exit(3),
    "exit0": lambda ctx: os._exit(0),
    "sleep": lambda ctx: time.sleep(3600),
    "flood": _probe_flood,
    "garbage": _probe_garbage,
    "selfkill": _probe_selfkill,
    "forged_value": _probe_forged_value,
    "block_signals_and_spin": _probe_block_signals_and_spin,
    "x32_socket": _probe_x32_socket,
    "syscall_sweep": _probe_syscall_sweep,
}
# oslayer (#9): the selftest's attacker probes (faas-sandbox selftest), as "attack:NAME"
PROBES.update({f"attack:{name}": probe for name, probe in attacks.PROBES.items()})
