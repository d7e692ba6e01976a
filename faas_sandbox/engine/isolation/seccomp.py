"""Build the allow-list filter of :mod:`.syscalls` with libseccomp, once, in the forker.

libseccomp (``pyseccomp``) compiles the table into classic BPF; the program is exported as
raw bytes and kept in a :class:`~faas_sandbox.engine.isolation.prctl.Program`, so a child only
makes the two prctl calls that load it. Building costs about a millisecond; loading, a few
microseconds.

The forker builds it in a throwaway child (:func:`build_in_child`) and keeps only the bytes:
importing ``pyseccomp`` pulls in ``ctypes.util`` -> ``subprocess`` -> ``threading``, whose
fork hook (``threading._after_fork``) then runs in every sandbox child, about 110 extra
copy-on-write page faults (~0.4 ms of CPU) per child here.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

from .prctl import Program
from .syscalls import ALLOWED, Rule


def _export(filt: Any) -> bytes:  # a pyseccomp.SyscallFilter (pyseccomp has no types)
    read_fd, write_fd = os.pipe()
    try:

        class _Sink:
            def fileno(self) -> int:
                return write_fd

        filt.export_bpf(_Sink())
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
        args = [
            seccomp.Arg(c.index, seccomp.EQ, c.value)
            if c.mask is None
            else seccomp.Arg(c.index, seccomp.MASKED_EQ, c.mask, c.value)
            for c in rule.conds
        ]
        try:
            filt.add_rule(seccomp.ALLOW, rule.name, *args)
        except (OSError, ValueError):
            unknown.append(rule.name)  # not a syscall on this architecture: stays denied
    return Program(_export(filt)), tuple(unknown)


_HEAD = struct.Struct(">BI")  # ok, length of the program (or of the error text)


def build_in_child(rules: tuple[Rule, ...] = ALLOWED) -> tuple[Program, tuple[str, ...]]:
    """:func:`build`, run in a forked child that exits afterwards, so ``pyseccomp`` (and the
    threading module it imports) never loads into the calling process. Raises OSError with
    the child's reason when the filter cannot be built."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always leaves through os._exit
        code = 1
        try:
            os.close(read_fd)
            try:
                program, unknown = build(rules)
                body = program.bpf + "\n".join(unknown).encode()
                out = _HEAD.pack(1, len(program.bpf)) + body
            except Exception as exc:  # noqa: BLE001 - reported to the parent, not raised
                text = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace")
                out = _HEAD.pack(0, len(text)) + text
            view = memoryview(out)
            while view:
                view = view[os.write(write_fd, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    data = b"".join(chunks)
    if len(data) < _HEAD.size:
        raise OSError("the seccomp builder child died without an answer")
    ok, size = _HEAD.unpack_from(data)
    body = data[_HEAD.size :]
    if not ok:
        raise OSError(body.decode("utf-8", "replace"))
    names = body[size:].decode()
    return Program(body[:size]), tuple(names.split("\n")) if names else ()
