"""Selftest probes against other processes, the child itself and the kernel: seeing,
signalling and tracing processes, prctl, rlimits, fork/exec, namespaces, executable memory,
kernel attack surface, and other functions' code in the child's memory."""

from __future__ import annotations

import ctypes
import os
import resource
import signal
from functools import partial
from typing import Any

from .attempts import Attempts, check, libc, read_file, syscall

PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4


def see_other_processes(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    ppid = ctx["args"]["forker_pid"]
    t("listdir /proc", lambda: os.listdir("/proc"))
    t("read /proc/1/cmdline", lambda: read_file("/proc/1/cmdline"))
    t(f"read /proc/{ppid}/status", lambda: read_file(f"/proc/{ppid}/status"))
    t("raw getppid", lambda: check(syscall("getppid")))
    t.raw(f"raw getpgid({ppid})", "getpgid", ppid)
    t.raw(f"raw getsid({ppid})", "getsid", ppid)
    t(f"kill({ppid}, 0)", lambda: os.kill(ppid, 0))
    t("kill(1, 0)", lambda: os.kill(1, 0))
    t.raw(f"pidfd_open({ppid})", "pidfd_open", ppid, 0)
    buf = ctypes.create_string_buffer(128)
    t.raw(f"sched_getaffinity({ppid})", "sched_getaffinity", ppid, 128, buf)
    return t.report()


def signal_other_process(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    ppid = ctx["args"]["forker_pid"]
    t(f"kill({ppid}, SIGCONT)", lambda: os.kill(ppid, signal.SIGCONT))
    t("kill(-1, 0) (every process of this uid)", lambda: os.kill(-1, 0))
    t(f"killpg({ppid}, 0)", lambda: os.killpg(ppid, 0))
    t.raw(f"tgkill({ppid}, {ppid}, 0)", "tgkill", ppid, ppid, 0)
    return t.report()


def ptrace_other_process(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    ppid = ctx["args"]["forker_pid"]
    t.raw(f"ptrace(PTRACE_ATTACH, {ppid})", "ptrace", 16, ppid, 0, 0)
    t.raw(f"ptrace(PTRACE_SEIZE, {ppid})", "ptrace", 0x4206, ppid, 0, 0)
    t.raw("ptrace(PTRACE_TRACEME)", "ptrace", 0, 0, 0, 0)
    buf = ctypes.create_string_buffer(16)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 16)
    t.raw(f"process_vm_readv({ppid})", "process_vm_readv", ppid, iov, 1, iov, 1, 0)
    return t.report()


def _prctl(option: int, arg: int) -> int:
    return check(
        libc.prctl(
            option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)
        )
    )


def clear_parent_death_signal(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("prctl(PR_SET_PDEATHSIG, 0)", lambda: _prctl(PR_SET_PDEATHSIG, 0))
    return t.report()


def set_dumpable(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("prctl(PR_SET_DUMPABLE, 1)", lambda: _prctl(PR_SET_DUMPABLE, 1))
    return t.report()


def raise_rlimit(ctx: dict[str, Any]) -> dict[str, Any]:
    """The child may set its own limits (it lowers them after its request), so the kernel's
    rule is what must hold: a hard limit cannot rise, and soft == hard leaves soft no room.
    A soft limit below its hard one is raised here and counts as a worked attempt."""
    t = Attempts()
    inf = resource.RLIM_INFINITY
    for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_FSIZE"):
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        if hard == inf:
            t.worked = True
            t.lines.append(f"{name}: WORKED (no hard limit to raise)")
            continue
        t(f"setrlimit({name}, inf)", partial(resource.setrlimit, which, (inf, inf)))
        t(f"hard {name} up by one", partial(resource.setrlimit, which, (hard + 1, hard + 1)))
        if soft < hard:
            t(f"soft {name} up to hard", partial(resource.setrlimit, which, (hard, hard)))
        else:
            t.lines.append(f"{name}: soft == hard == {hard}")
        now = resource.getrlimit(which)
        if now[0] > soft or now[1] > hard:
            t.worked = True
            t.lines.append(f"{name}: WORKED (({soft}, {hard}) -> {now})")
    new = (ctypes.c_uint64 * 2)(inf, inf)
    for label, pid in (("the forker", ctx["args"]["forker_pid"]), ("its own pid", os.getpid())):
        t.raw(
            f"prlimit64({label}, RLIMIT_CPU, inf)", "prlimit64", pid, resource.RLIMIT_CPU, new, None
        )
    return t.report()


def fork(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()

    def checked(result: int) -> int:
        if result == 0:
            os._exit(0)  # we are a child that got out: leave at once
        return check(result)

    t("os.fork", lambda: checked(os.fork()))
    t("raw fork", lambda: checked(syscall("fork")))
    t(
        "raw clone(SIGCHLD)",
        lambda: checked(syscall("clone", ctypes.c_ulong(signal.SIGCHLD), None, None, None, 0)),
    )
    clone_args = (ctypes.c_uint64 * 11)()  # struct clone_args (v2), exit_signal SIGCHLD
    clone_args[4] = signal.SIGCHLD
    t("raw clone3", lambda: checked(syscall("clone3", clone_args, ctypes.c_size_t(88))))
    return t.report()


def execve(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("execv /bin/true", lambda: os.execv("/bin/true", ["true"]))
    t.raw("memfd_create", "memfd_create", b"x", 0)
    t.raw(
        "execveat(AT_FDCWD, /bin/true)", "execveat", ctypes.c_int(-100), b"/bin/true", None, None, 0
    )
    return t.report()


def unshare_or_mount(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t.raw("unshare(CLONE_NEWUSER)", "unshare", 0x10000000)
    t.raw("unshare(CLONE_NEWNS)", "unshare", 0x00020000)
    t.raw("mount tmpfs on .", "mount", b"none", b".", b"tmpfs", 0, None)
    t.raw("chroot .", "chroot", b".")
    t.raw("setns(0, 0)", "setns", 0, 0)
    return t.report()


def map_executable_memory(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]

    def mapped(prot: int) -> int:
        addr = libc.mmap(None, 4096, prot, 0x22, -1, 0)  # MAP_PRIVATE | MAP_ANONYMOUS
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return int(addr)

    t("mmap(PROT_READ|PROT_WRITE|PROT_EXEC)", lambda: mapped(7))
    addr = t("mmap(PROT_READ|PROT_WRITE) (data: allowed)", lambda: mapped(3))
    t.worked = False  # plain data memory is allowed; only the next step matters
    if addr:
        t(
            "mprotect(PROT_READ|PROT_EXEC)",
            lambda: check(libc.mprotect(ctypes.c_void_p(addr), ctypes.c_size_t(4096), 5)),
        )
    return t.report()


def kernel_attack_surface(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t.raw("bpf", "bpf", 0, None, 0)
    t.raw("perf_event_open", "perf_event_open", None, 0, -1, -1, 0)
    t.raw("io_uring_setup", "io_uring_setup", 1, None)
    t.raw("userfaultfd", "userfaultfd", 0)
    t.raw("keyctl", "keyctl", 0, 0)
    return t.report()


libc.memmem.restype = ctypes.c_void_p
libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]


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
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), 0) != 0:
            continue  # not mapped in this child
        scanned += end - start
        pos = start
        while pos < end:
            found = libc.memmem(pos, end - pos, own, len(needle))
            if not found:
                break
            if found != own:
                hits.append(found)
            pos = found + 1
    if hits:
        return {
            "denied": False,
            "detail": f"marker found {len(hits)} time(s) in "
            f"{scanned >> 20} MiB searched, first at {hits[0]:#x}",
        }
    return {
        "denied": True,
        "detail": f"marker not found in {scanned >> 20} MiB of writable "
        f"memory ({len(args['ranges'])} ranges of the forker's map)",
    }
