"""Build the allow-list filter of :mod:`.syscalls` with libseccomp, once, in the forker.

libseccomp (``pyseccomp``) compiles the table into classic BPF; the program is exported as
raw bytes and kept in a :class:`~faas_sandbox.engine.isolation.prctl.Program`, so a child only
makes the two prctl calls that load it. Building costs about a millisecond; loading, a few
microseconds.
"""

from __future__ import annotations

import errno
import os

from .prctl import Program
from .syscalls import ALLOWED, Rule


def _export(filt: object) -> bytes:
    read_fd, write_fd = os.pipe()
    try:
        class _Sink:
            def fileno(self) -> int:
                return write_fd

        filt.export_bpf(_Sink())  # type: ignore[attr-defined]
        os.close(write_fd)
        write_fd = -1
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    return b"".join(chunks)


def build(rules: tuple[Rule, ...] = ALLOWED) -> tuple[Program, tuple[str, ...]]:
    """The filter as raw BPF, and the names of rules this kernel/libseccomp does not know."""
    import pyseccomp as seccomp  # imported here: the forker is the only builder

    filt = seccomp.SyscallFilter(seccomp.ERRNO(errno.EPERM))
    filt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    unknown = []
    for rule in rules:
        args = [seccomp.Arg(c.index, seccomp.EQ, c.value) if c.mask is None
                else seccomp.Arg(c.index, seccomp.MASKED_EQ, c.mask, c.value)
                for c in rule.conds]
        try:
            filt.add_rule(seccomp.ALLOW, rule.name, *args)
        except (OSError, ValueError):
            unknown.append(rule.name)  # not a syscall on this architecture: stays denied
    return Program(_export(filt)), tuple(unknown)
