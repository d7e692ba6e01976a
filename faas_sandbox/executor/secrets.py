"""Process hygiene at executor start: keys out of ``/proc/<pid>/environ`` (a clean re-exec,
the keys handed over through a pipe) and a fixed malloc mmap threshold.

``/proc/<pid>/environ`` shows the environment block the process was started with; popping a
variable from ``os.environ`` does not change it, so anyone who may read that file (same uid,
root, a core dump) would still see the keys. :func:`reexec_without_keys` therefore writes the
key variables to a pipe, then ``execve``\\ s the same command line (same pid) with an
environment that lacks them and names the pipe's read end; :func:`take_keys` in the new image
reads them back (once) into ordinary memory.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys

from ..errors import SettingsError
from ..settings import KEY_VARIABLES

FD_VARIABLE = "FAAS_SANDBOX_KEYS_FD"
_MAX_BYTES = 60_000  # below the pipe buffer, so the write never blocks


def reexec_without_keys() -> None:
    """Return at once when no key variable is set; else re-exec without them (never returns)."""
    keys = {name: os.environ[name] for name in KEY_VARIABLES if os.environ.get(name)}
    if not keys:
        return
    data = json.dumps(keys).encode()
    if len(data) > _MAX_BYTES:
        raise SettingsError("key variables are too long")
    read_end, write_end = os.pipe()
    os.write(write_end, data)
    os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env[FD_VARIABLE] = str(read_end)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, sys.orig_argv, env)


def take_keys() -> dict[str, str]:
    """The key variables handed over by :func:`reexec_without_keys` (empty if none)."""
    text = os.environ.pop(FD_VARIABLE, "")
    if not text.isdigit():
        return {}
    fd = int(text)
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        raise SettingsError(f"cannot read the keys handed over by the re-exec: {exc}") from None
    finally:
        os.close(fd)
    try:
        keys = json.loads(b"".join(chunks))
    except ValueError:
        raise SettingsError("keys handed over by the re-exec are not readable") from None
    return {k: v for k, v in keys.items() if k in KEY_VARIABLES and isinstance(v, str)}


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def fixed_mmap_threshold(size: int = 128 * 1024) -> bool:
    """Allocations of ``size`` bytes or more get their own mapping, returned to the system
    when freed (glibc ``mallopt``; False where there is none).

    glibc raises this threshold after freeing a large mapped block, after which replies of
    several MB (a hostile spec is written out as ~8 MB) come from the heap arenas of the
    threads that read them and stay in the executor's RSS. A fixed threshold keeps it flat."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False
