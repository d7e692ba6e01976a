"""The syscall filter and the prctl calls a child makes, through ctypes over libc.

The filter is built once, in the forker, with libseccomp (``pyseccomp``) and exported as a raw
classic-BPF program. Building it costs about a millisecond; loading the exported program is two
prctl calls, so each child only does :meth:`Program.install`:
``prctl(PR_SET_NO_NEW_PRIVS, 1)`` then ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)``.

Default action ALLOW; every syscall in :data:`DENIED` fails with EPERM (clear errors beat a
dead child); ``prlimit64`` fails with EPERM unless it targets the calling process (pid 0), so
the child can still lower its own limits. Foreign ABIs (i386, x32) kill the process.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal

# Process creation, network, namespaces/mounts, debugging other processes, kernel attack
# surface, signals to other processes. Names unknown to this libseccomp are skipped.
DENIED: tuple[str, ...] = (
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",
    "mount", "umount2", "unshare", "setns", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "personality",
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
)

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

    __slots__ = ("_buf", "_prog", "instructions")

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError(f"not a BPF program: {len(bpf)} bytes")
        self.instructions = len(bpf) // 8
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(self.instructions, ctypes.addressof(self._buf))

    def install(self) -> None:
        """Install the filter on the calling process (sets no_new_privs first)."""
        set_no_new_privs()
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self._prog))


def build(denied: tuple[str, ...] = DENIED) -> Program:
    """Build the filter with libseccomp and export it as raw BPF (forker only)."""
    import pyseccomp as seccomp  # imported here: the forker is the only builder

    filt = seccomp.SyscallFilter(seccomp.ALLOW)
    filt.set_attr(seccomp.Attr.ACT_BADARCH, seccomp.KILL_PROCESS)
    eperm = seccomp.ERRNO(errno.EPERM)
    for name in denied:
        try:
            filt.add_rule(eperm, name)
        except (OSError, ValueError):
            continue  # syscall unknown on this architecture
    filt.add_rule(eperm, "prlimit64", seccomp.Arg(0, seccomp.NE, 0))
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
    return Program(b"".join(chunks))
