"""The OS layer of a sandbox child: what still holds after a full escape from the language.

Layers (each detected at forker start and reported in ``Sandbox.features["layers"]``):

========================  ===================================================================
``seccomp``               allow-list syscall filter (:mod:`.syscalls`), default EPERM
``landlock``              no path may be opened, no TCP bind/connect, no abstract unix socket
                          or signal outside the child's domain (:mod:`.landlock`)
``net_namespace``         the forker and its children have only a downed loopback device
``ipc_namespace``         no SysV IPC / POSIX message queues of the host
``drop_privileges``       children run as the policy's uid/gid (only possible as root)
========================  ===================================================================

Set up in two places: :func:`prepare` runs once in the forker (enter namespaces, build the
filter, create the Landlock ruleset); each child enters both while it is idle, once it has
opened all it needs and before it blocks on its request (:meth:`Lockdown.enter`). The filter
lets ``prlimit64`` act only on the child itself, so it can still lower its rlimits to the
call's (soft == hard; raising a hard limit needs CAP_SYS_RESOURCE, which a child lacks).
A policy's ``[sandbox] require`` names layers without which the Sandbox
refuses to start (:func:`missing`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from . import landlock, namespaces, prctl, seccomp

LAYERS = ("seccomp", "landlock", "net_namespace", "ipc_namespace", "drop_privileges")


@dataclass(frozen=True, slots=True)
class Lockdown:
    """What a child applies to itself before running the call (built in the forker)."""

    program: prctl.Program | None
    ruleset_fd: int | None  # Landlock ruleset (inherited; closed by the child after use)

    @property
    def fds(self) -> tuple[int, ...]:
        """Descriptors a child must keep open until :meth:`enter`."""
        return () if self.ruleset_fd is None else (self.ruleset_fd,)

    def enter(self) -> None:
        """Landlock, then the filter; raises OSError if a layer fails. no_new_privs is set
        already (the child sets it while isolating; both layers require it)."""
        self.restrict_paths()
        self.install_filter()

    def restrict_paths(self) -> None:
        """Landlock (a spare enters it while idle, once it has opened all it needs)."""
        if self.ruleset_fd is not None:
            landlock.restrict_self(self.ruleset_fd)
            os.close(self.ruleset_fd)

    def install_filter(self) -> None:
        """The allow-list filter (:mod:`.syscalls`)."""
        if self.program is not None:
            self.program.install()


def prepare(want_seccomp: bool, want_namespaces: bool = True) -> tuple[Lockdown, dict[str, Any]]:
    """Forker start: enter namespaces, build the filter and the ruleset; the layer report."""
    report: dict[str, Any] = {"seccomp": False, "landlock": False, "landlock_abi": 0}
    # glibc reads /etc/localtime on the first localtime(); a locked-down child could not
    # (no open), and would silently use UTC. Read it here, once: children inherit it.
    time.localtime()
    if want_namespaces:
        report.update(namespaces.enter())
    program = None
    if want_seccomp:
        try:
            program, unknown = seccomp.build_in_child()
            report["seccomp_instructions"] = program.instructions
            if unknown:
                report["seccomp_unknown_syscalls"] = list(unknown)
        except Exception as exc:  # noqa: BLE001 - libseccomp missing or broken (OSError)
            report["seccomp_error"] = f"cannot build the filter: {exc}"
    abi = landlock.abi_version()
    report["landlock_abi"] = abi
    ruleset_fd = None
    if abi > 0:
        try:
            ruleset_fd = landlock.create_ruleset(abi)
        except OSError as exc:
            report["landlock_error"] = str(exc)
    else:
        report["landlock_error"] = "Landlock is not available in this kernel (or disabled)"
    return Lockdown(program, ruleset_fd), report


def confirm(report: dict[str, Any], lockdown: Lockdown | None, child_ok: bool) -> None:
    """Mark the layers that a start-up child actually entered (none without a lockdown)."""
    report["seccomp"] = child_ok and lockdown is not None and lockdown.program is not None
    report["landlock"] = child_ok and lockdown is not None and lockdown.ruleset_fd is not None


def missing(required: tuple[str, ...] | frozenset[str], layers: dict[str, Any]) -> list[str]:
    """The required layers that are not active."""
    return sorted(name for name in required if not layers.get(name))


def describe(layers: dict[str, Any]) -> str:
    """One log line: which layers are on, which are off and why."""
    on = [name for name in LAYERS if layers.get(name)]
    off = [name for name in LAYERS if not layers.get(name)]
    why = [f"{k}={v}" for k, v in layers.items() if k.endswith("_error")]
    text = f"isolation layers on: {', '.join(on) or 'none'}"
    if off:
        text += f"; off: {', '.join(off)}"
    if why:
        text += f" ({'; '.join(why)})"
    return text
