"""The two facts the idle seccomp filter rests on, checked in plain forked processes.

With every rlimit soft == hard a child's limits can only go down (the selftest's
``raise_rlimit`` probe must see it, and must fail when a soft limit sits below its hard one),
and the kernel's SIGKILL at RLIMIT_CPU is told apart by the CPU clock that limit is checked
against (``forker.limit_clock``), which ``wait4``'s rusage can read just below."""

from __future__ import annotations

import os
import resource
import signal

from faas_sandbox.engine.forker import limit_clock
from faas_sandbox.engine.isolation.attacks_inside import raise_rlimit

_FINITE = (resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC, resource.RLIMIT_FSIZE)


def _probe_in_child(cpu: tuple[int, int]) -> bytes:
    """``raise_rlimit`` in a forked child (uid 65534 when we are root, like a sandbox child)
    whose limits are all finite, RLIMIT_CPU ``cpu`` and the others soft == hard; b"1" if it
    reported denied, b"0" if not (nothing if the child failed)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves through os._exit
        try:
            os.close(read_fd)
            if os.geteuid() == 0:  # as a sandbox child: no capabilities (CAP_SYS_RESOURCE)
                os.setgroups([])
                os.setresgid(65534, 65534, 65534)
                os.setresuid(65534, 65534, 65534)
            for which in _FINITE:
                hard = resource.getrlimit(which)[1]
                value = 1 << 40 if hard == resource.RLIM_INFINITY else hard
                resource.setrlimit(which, (value, value))
            resource.setrlimit(resource.RLIMIT_CPU, cpu)
            report = raise_rlimit({"args": {"forker_pid": os.getpid()}})
            os.write(write_fd, b"1" if report["denied"] else b"0")
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        return os.read(read_fd, 1)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)


def test_raise_rlimit_probe_is_denied_only_when_every_soft_limit_is_its_hard_one() -> None:
    assert _probe_in_child((50, 50)) == b"1"
    assert _probe_in_child((50, 60)) == b"0"  # soft CPU could rise to 60: not denied


def test_limit_clock_reads_at_least_the_cpu_limit_of_a_child_it_killed() -> None:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - killed by the kernel at 1 s of CPU
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (1, 1))
            while True:
                pass
        finally:
            os._exit(1)
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    clock = limit_clock(pid)
    _, status, _ = os.wait4(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert 1.0 <= clock < 3.0
