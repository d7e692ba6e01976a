"""The syscall allow-list of a sandbox child, one line per syscall: what the call needs it for.

Read it like RestrictedPython's ``Guards.py`` reads for builtins: anything not listed here is
refused. The filter is installed (:mod:`.seccomp`) by an idle spare, once it has opened all it
needs and before it blocks on its request; from then on the process runs pure Python on
memory it already has, two pipes and the clock. It still lowers its rlimits to the call's
after the request arrives (``prlimit64`` on itself may write): every limit is set with soft
equal to hard, and without CAP_SYS_RESOURCE the kernel lets a process only lower a hard
limit, so the limits it runs under can go down, never up.

Default action: **EPERM** for every syscall not listed (and for a listed one whose argument
filter does not match). Why not kill: a denied syscall does nothing either way, so killing
adds no protection; EPERM keeps failures values, not mysteries. An escaped attacker sees an
``OSError`` and learns only what this table already says; a *benign* call that reaches an
unforeseen syscall through CPython or glibc gets a ``runtime`` error naming the refusal
instead of a SIGSYS death classified as ``crash``; and the selftest can try every attack
from one child and report each refusal. glibc and CPython also treat EPERM as final, while
ENOSYS would make them retry older, different syscalls. The one exception is a foreign
syscall ABI (i386 ``int 0x80``, x32): the process is killed, since a filter for one ABI says
nothing about syscall numbers of another.

Argument filters (``Cond``) narrow a syscall to the one safe form; each compares the raw
64-bit register, so a value with stray upper bits fails closed.
"""

from __future__ import annotations

from dataclasses import dataclass

PROT_EXEC = 0x4


@dataclass(frozen=True, slots=True)
class Cond:
    """``arg[index] & mask == value`` (mask None: ``arg[index] == value``)."""

    index: int
    value: int
    mask: int | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    reason: str
    conds: tuple[Cond, ...] = ()


def _r(name: str, reason: str, *conds: Cond) -> Rule:
    return Rule(name, reason, conds)


NO_EXEC = Cond(2, 0, PROT_EXEC)  # the prot argument of mmap/mprotect has no PROT_EXEC bit

ALLOWED: tuple[Rule, ...] = (
    # -- its own two pipes (and only fds it already holds: nothing can open a new one) --------
    _r("read", "read the rest of a request frame from its own pipe"),
    _r("write", "write the result frame to its own pipe"),
    _r("close", "CPython closes descriptors it owns (e.g. when an mmap object is freed)"),
    # -- memory (the interpreter allocates all the time) ---------------------------------------
    _r("brk", "glibc malloc grows and shrinks the main heap"),
    _r("mmap", "CPython arenas and large objects; never executable memory", NO_EXEC),
    _r("mprotect", "glibc malloc commits heap pages; never makes memory executable", NO_EXEC),
    _r("munmap", "free arenas and large objects"),
    _r("mremap", "realloc of large buffers (list, bytes, str growth)"),
    _r("madvise", "glibc malloc returns freed pages to the kernel"),
    # -- time and randomness ------------------------------------------------------------------
    _r("clock_gettime", "time.time/monotonic/perf_counter when the vDSO falls back"),
    _r("clock_getres", "time.get_clock_info"),
    _r("gettimeofday", "old-style clock read by glibc when the vDSO falls back"),
    _r("clock_nanosleep", "time.sleep"),
    _r("nanosleep", "time.sleep on older glibc"),
    _r("restart_syscall", "the kernel resumes a sleep interrupted by a signal"),
    _r("getrandom", "os.urandom, random seeding, hash randomisation of new objects"),
    # -- the process itself --------------------------------------------------------------------
    _r("futex", "glibc locks (stdio, malloc); single-threaded, so never contended"),
    _r("rt_sigreturn", "return from a signal handler"),
    _r("rt_sigprocmask", "glibc masks signals around some library calls"),
    _r(
        "getrusage",
        "the child reports its own CPU time and peak RSS (RUSAGE_SELF only)",
        Cond(0, 0),
    ),
    _r(
        "prlimit64",
        "getrlimit/setrlimit on itself (pid 0 only): the call's limits are set "
        "after the request, soft == hard, so the kernel lets them only go down",
        Cond(0, 0),
    ),
    _r("getpid", "its own pid"),
    _r("gettid", "its own thread id (glibc)"),
    _r("getuid", "its own credentials (read only)"),
    _r("geteuid", "its own credentials (read only)"),
    _r("getgid", "its own credentials (read only)"),
    _r("getegid", "its own credentials (read only)"),
    _r("getresuid", "its own credentials (read only)"),
    _r("getresgid", "its own credentials (read only)"),
    _r("getgroups", "its own credentials (read only)"),
    _r("getpgid", "its own process group only (pid 0)", Cond(0, 0)),
    _r("getsid", "its own session only (pid 0)", Cond(0, 0)),
    _r("exit", "a thread leaves (glibc)"),
    _r("exit_group", "os._exit: the only way a child leaves"),
)

ALLOWED_NAMES = frozenset(rule.name for rule in ALLOWED)
