"""Selftest probes: trusted code that plays an attacker who has fully escaped the language.

Each runs in a real sandbox child, in place of a function and after the same lockdown (see
:mod:`faas_sandbox.engine.probes`), with the whole of Python: ``os``, ``socket``, ``ctypes`` and raw
syscalls. Each tries every route to one goal and returns ``{"denied", "detail"}``: denied
only if *no* attempt worked; the detail lists each attempt and its errno. Parameters come in
``ctx["args"]`` (from :mod:`.selftest`): the forker's pid, a loopback port and an abstract
socket name that the selftest listens on, file names to try, the hex of a marker string and
the memory ranges to search for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .attacks_inside import (
    clear_parent_death_signal,
    execve,
    fork,
    kernel_attack_surface,
    map_executable_memory,
    other_function_code_in_memory,
    ptrace_other_process,
    raise_rlimit,
    see_other_processes,
    set_dumpable,
    signal_other_process,
    unshare_or_mount,
)
from .attacks_outside import (
    connect_loopback,
    create_file_cwd,
    create_file_tmp,
    list_root,
    read_etc_passwd,
    read_package_source,
    read_parent_environ,
    socket_inet,
    socket_unix,
)

PROBES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    f.__name__: f
    for f in (
        read_etc_passwd,
        read_package_source,
        read_parent_environ,
        list_root,
        create_file_tmp,
        create_file_cwd,
        socket_inet,
        socket_unix,
        connect_loopback,
        see_other_processes,
        signal_other_process,
        ptrace_other_process,
        clear_parent_death_signal,
        set_dumpable,
        raise_rlimit,
        fork,
        execve,
        unshare_or_mount,
        map_executable_memory,
        kernel_attack_surface,
        other_function_code_in_memory,
    )
}
