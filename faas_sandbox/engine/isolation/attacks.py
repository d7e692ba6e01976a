"""Selftest probes: trusted code that plays an attacker who has fully escaped the language.

Each runs in a real sandbox child, in place of a function and after the same lockdown (see
:mod:`faas_sandbox.probes`), with the whole of Python: ``os``, ``socket``, ``ctypes`` and raw
syscalls. Each tries every route to one goal and returns ``{"denied", "detail"}``: denied
only if *no* attempt worked; the detail lists each attempt and its errno. Parameters come in
``ctx["args"]`` (from :mod:`.selftest`): the forker's pid, a loopback port and an abstract
socket name that the selftest listens on, file names to try, the hex of a marker string and
the memory ranges to search for it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import socket
from collections.abc import Callable
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int

# x86_64 syscall numbers of the raw attempts (the wrappers are tried too)
NR = {"fork": 57, "vfork": 58, "clone": 56, "clone3": 435, "ptrace": 101, "kill": 62,
      "tgkill": 234, "pidfd_open": 434, "pidfd_send_signal": 424, "process_vm_readv": 310,
      "unshare": 272, "setns": 308, "mount": 165, "chroot": 161, "pivot_root": 155,
      "openat": 257, "open": 2, "openat2": 437, "getdents64": 217, "memfd_create": 319,
      "bpf": 321, "perf_event_open": 298, "io_uring_setup": 425, "userfaultfd": 323,
      "keyctl": 250, "execveat": 322, "sched_getaffinity": 204, "getpgid": 121,
      "getsid": 124, "getppid": 110, "socket": 41, "socketpair": 53}
PR_SET_PDEATHSIG, PR_GET_PDEATHSIG, PR_SET_DUMPABLE = 1, 2, 4


# errnos that mean the syscall ran and only our (deliberately minimal) arguments were bad:
# no layer stopped it, so the attempt counts as not denied
_REACHED = {errno.EINVAL, errno.EFAULT, errno.EBADF}


class _Attempts:
    """Records each attempt: ``worked`` if it returned (or got past every layer and failed
    only on its arguments), the errno/exception text if it was refused."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.worked = False

    def __call__(self, label: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
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

    def raw(self, label: str, name: str, *args: Any) -> int:
        """A raw syscall; negative results become OSError(errno)."""
        def call() -> int:
            result = _libc.syscall(ctypes.c_long(NR[name]), *args)
            if result < 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            return int(result)
        return self(label, call)

    def report(self) -> dict[str, Any]:
        return {"denied": not self.worked, "detail": "; ".join(self.lines)}


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def read_etc_passwd(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("open", lambda: _read("/etc/passwd"))
    t.raw("raw openat", "openat", ctypes.c_int(-100), b"/etc/passwd", 0, 0)
    how = (ctypes.c_uint64 * 3)(0, 0, 0)  # struct open_how: O_RDONLY
    t.raw("raw openat2", "openat2", ctypes.c_int(-100), b"/etc/passwd", how, 24)
    return t.report()


def read_package_source(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("open own module", lambda: _read(__file__))
    t("open package", lambda: _read(ctx["args"]["package_file"]))
    return t.report()


def read_parent_environ(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    ppid = ctx["args"]["forker_pid"]
    t("open /proc/PPID/environ", lambda: _read(f"/proc/{ppid}/environ"))
    t("open /proc/PPID/mem", lambda: _read(f"/proc/{ppid}/mem"))
    t("open /proc/self/environ", lambda: _read("/proc/self/environ"))
    return t.report()


def list_root(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("listdir /", lambda: os.listdir("/"))
    t("listdir .", lambda: os.listdir("."))
    t("listdir /tmp", lambda: os.listdir("/tmp"))
    t("raw open / O_DIRECTORY", lambda: _check_fd(_libc.syscall(
        ctypes.c_long(NR["openat"]), ctypes.c_int(-100), b"/", 0o200000, 0)))
    return t.report()


def _check_fd(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _create(t: _Attempts, paths: list[str]) -> None:
    for path in paths:
        t(f"create {path}", lambda p=path: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)))
        t(f"mkdir {path}.d", lambda p=path: os.mkdir(p + ".d"))
        t(f"mkfifo {path}.p", lambda p=path: os.mkfifo(p + ".p"))
        t(f"symlink {path}.l", lambda p=path: os.symlink("/etc/passwd", p + ".l"))


def create_file_tmp(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    _create(t, ctx["args"]["tmp_paths"])
    return t.report()


def create_file_cwd(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    _create(t, [ctx["args"]["cwd_name"]])
    return t.report()


def socket_inet(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    for family, kind in ((socket.AF_INET, socket.SOCK_STREAM), (socket.AF_INET, socket.SOCK_DGRAM),
                         (socket.AF_INET6, socket.SOCK_STREAM), (socket.AF_NETLINK, socket.SOCK_RAW)):
        t(f"socket({family.name}, {kind.name})", lambda f=family, k=kind: socket.socket(f, k).close())
    t.raw("raw socket(AF_INET)", "socket", 2, 1, 0)
    return t.report()


def socket_unix(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("socket(AF_UNIX)", lambda: socket.socket(socket.AF_UNIX).close())
    t("socketpair", lambda: [s.close() for s in socket.socketpair()])
    name = "\0" + ctx["args"]["abstract_name"]
    def connect_abstract() -> None:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(name)
        finally:
            s.close()
    t("connect abstract", connect_abstract)
    return t.report()


def connect_loopback(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    port = ctx["args"]["port"]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        def connect(f: int = family, h: str = host) -> None:
            s = socket.socket(f, socket.SOCK_STREAM)
            try:
                s.settimeout(1)
                s.connect((h, port))
            finally:
                s.close()
        t(f"connect {host} port {port}", connect)
    return t.report()


def see_other_processes(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    ppid = ctx["args"]["forker_pid"]
    t("listdir /proc", lambda: os.listdir("/proc"))
    t("read /proc/1/cmdline", lambda: _read("/proc/1/cmdline"))
    t(f"read /proc/{ppid}/status", lambda: _read(f"/proc/{ppid}/status"))
    t("raw getppid", lambda: _check_fd(_libc.syscall(ctypes.c_long(NR["getppid"]))))
    t.raw(f"raw getpgid({ppid})", "getpgid", ppid)
    t.raw(f"raw getsid({ppid})", "getsid", ppid)
    t(f"kill({ppid}, 0)", lambda: os.kill(ppid, 0))
    t("kill(1, 0)", lambda: os.kill(1, 0))
    t.raw(f"pidfd_open({ppid})", "pidfd_open", ppid, 0)
    buf = ctypes.create_string_buffer(128)
    t.raw(f"sched_getaffinity({ppid})", "sched_getaffinity", ppid, 128, buf)
    return t.report()


def signal_other_process(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    ppid = ctx["args"]["forker_pid"]
    t(f"kill({ppid}, SIGCONT)", lambda: os.kill(ppid, signal.SIGCONT))
    t("kill(-1, 0) (every process of this uid)", lambda: os.kill(-1, 0))
    t(f"killpg({ppid}, 0)", lambda: os.killpg(ppid, 0))
    t.raw(f"tgkill({ppid}, {ppid}, 0)", "tgkill", ppid, ppid, 0)
    return t.report()


def ptrace_other_process(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    ppid = ctx["args"]["forker_pid"]
    t.raw(f"ptrace(PTRACE_ATTACH, {ppid})", "ptrace", 16, ppid, 0, 0)
    t.raw(f"ptrace(PTRACE_SEIZE, {ppid})", "ptrace", 0x4206, ppid, 0, 0)
    t.raw("ptrace(PTRACE_TRACEME)", "ptrace", 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(16)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
    t.raw(f"process_vm_readv({ppid})", "process_vm_readv", ppid, iov, 1, iov, 1, 0)
    return t.report()


def _prctl(option: int, arg: int) -> int:
    return _check_fd(_libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0),
                                 ctypes.c_ulong(0), ctypes.c_ulong(0)))


def clear_parent_death_signal(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("prctl(PR_SET_PDEATHSIG, 0)", lambda: _prctl(PR_SET_PDEATHSIG, 0))
    return t.report()


def set_dumpable(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("prctl(PR_SET_DUMPABLE, 1)", lambda: _prctl(PR_SET_DUMPABLE, 1))
    return t.report()


def raise_rlimit(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    inf = resource.RLIM_INFINITY
    for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
        which = getattr(resource, name)
        t(f"setrlimit({name}, inf)", lambda w=which: resource.setrlimit(w, (inf, inf)))
        t(f"soft {name} up to hard", lambda w=which: resource.setrlimit(
            w, (resource.getrlimit(w)[1], resource.getrlimit(w)[1])))
    return t.report()


def fork(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()

    def checked(result: int) -> int:
        if result == 0:
            os._exit(0)  # we are a child that got out: leave at once
        return _check_fd(result)
    t("os.fork", lambda: checked(os.fork()))
    t("raw fork", lambda: checked(_libc.syscall(ctypes.c_long(NR["fork"]))))
    t("raw clone(SIGCHLD)", lambda: checked(_libc.syscall(
        ctypes.c_long(NR["clone"]), ctypes.c_ulong(signal.SIGCHLD), None, None, None, 0)))
    clone_args = (ctypes.c_uint64 * 11)()  # struct clone_args (v2), exit_signal SIGCHLD
    clone_args[4] = signal.SIGCHLD
    t("raw clone3", lambda: checked(_libc.syscall(ctypes.c_long(NR["clone3"]), clone_args,
                                                  ctypes.c_size_t(88))))
    return t.report()


def execve(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t("execv /bin/true", lambda: os.execv("/bin/true", ["true"]))
    t.raw("memfd_create", "memfd_create", b"x", 0)
    t.raw("execveat(AT_FDCWD, /bin/true)", "execveat", ctypes.c_int(-100), b"/bin/true",
          None, None, 0)
    return t.report()


def unshare_or_mount(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t.raw("unshare(CLONE_NEWUSER)", "unshare", 0x10000000)
    t.raw("unshare(CLONE_NEWNS)", "unshare", 0x00020000)
    t.raw("mount tmpfs on .", "mount", b"none", b".", b"tmpfs", 0, None)
    t.raw("chroot .", "chroot", b".")
    t.raw("setns(0, 0)", "setns", 0, 0)
    return t.report()


def map_executable_memory(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    _libc.mmap.restype = ctypes.c_void_p
    _libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                           ctypes.c_int, ctypes.c_long]
    def mapped(prot: int) -> int:
        addr = _libc.mmap(None, 4096, prot, 0x22, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(addr)
    t("mmap(PROT_READ|PROT_WRITE|PROT_EXEC)", lambda: mapped(7))
    addr = t("mmap(PROT_READ|PROT_WRITE) (data: allowed)", lambda: mapped(3))
    t.worked = False  # plain data memory is allowed; only the next step matters
    if addr:
        t("mprotect(PROT_READ|PROT_EXEC)", lambda: _check_fd(_libc.mprotect(
            ctypes.c_void_p(addr), ctypes.c_size_t(4096), 5)))
    return t.report()


def kernel_attack_surface(ctx: dict[str, Any]) -> dict[str, Any]:
    t = _Attempts()
    t.raw("bpf", "bpf", 0, None, 0)
    t.raw("perf_event_open", "perf_event_open", None, 0, -1, -1, 0)
    t.raw("io_uring_setup", "io_uring_setup", 1, None)
    t.raw("userfaultfd", "userfaultfd", 0)
    t.raw("keyctl", "keyctl", 0, 0)
    return t.report()


_libc.memmem.restype = ctypes.c_void_p
_libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]


def other_function_code_in_memory(ctx: dict[str, Any]) -> dict[str, Any]:
    """Search the writable memory of this process for another function's marker string.

    The ranges come from the forker's memory map (a child's is a copy of it); each is first
    checked with madvise (allowed, and it fails on unmapped memory) so a range this child
    does not have is skipped instead of faulting. libc ``memmem`` searches in place, so the
    only copy we make is the needle itself, whose own address is excluded."""
    args = ctx["args"]
    needle = bytes.fromhex(args["marker_hex"])
    own = id(needle) + bytes.__basicsize__ - 1  # where the needle's bytes live
    scanned, hits = 0, []
    for start, end in args["ranges"]:
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 0) != 0:
            continue  # not mapped in this child
        scanned += end - start
        pos = start
        while pos < end:
            found = _libc.memmem(pos, end - pos, own, len(needle))
            if not found:
                break
            if found != own:
                hits.append(found)
            pos = found + 1
    if hits:
        return {"denied": False, "detail": f"marker found {len(hits)} time(s) in "
                f"{scanned >> 20} MiB searched, first at {hits[0]:#x}"}
    return {"denied": True, "detail": f"marker not found in {scanned >> 20} MiB of writable "
            f"memory ({len(args['ranges'])} ranges of the forker's map)"}


PROBES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    f.__name__: f for f in (
        read_etc_passwd, read_package_source, read_parent_environ, list_root, create_file_tmp,
        create_file_cwd, socket_inet, socket_unix, connect_loopback, see_other_processes,
        signal_other_process, ptrace_other_process, clear_parent_death_signal, set_dumpable,
        raise_rlimit, fork, execve, unshare_or_mount, map_executable_memory,
        kernel_attack_surface, other_function_code_in_memory)
}
