"""child.call_limits: one call's rlimits, pure (nothing is applied here)."""

from __future__ import annotations

import resource

from faas_sandbox.engine.child import call_limits
from faas_sandbox.policy import Limits

INF = resource.RLIM_INFINITY
LIMITS = Limits(cpu_seconds=3, memory_mb=64, max_open_files=16, max_processes=1, file_size_bytes=0)


def test_the_calls_limits_over_the_childs_size() -> None:
    """Every limit soft == hard: with no CAP_SYS_RESOURCE the child can only lower them."""
    hard = dict.fromkeys(
        (
            resource.RLIMIT_AS,
            resource.RLIMIT_CPU,
            resource.RLIMIT_FSIZE,
            resource.RLIMIT_NPROC,
            resource.RLIMIT_NOFILE,
        ),
        INF,
    )
    got = {which: (soft, top) for which, soft, top in call_limits(LIMITS, 100 << 20, hard)}
    assert got[resource.RLIMIT_AS] == ((164 << 20), (164 << 20))
    assert got[resource.RLIMIT_CPU] == (3, 3)
    assert got[resource.RLIMIT_FSIZE] == (0, 0)
    assert got[resource.RLIMIT_NPROC] == (1, 1)
    assert got[resource.RLIMIT_NOFILE] == (16, 16)


def test_never_above_the_hard_limits_the_child_has() -> None:
    hard = {
        resource.RLIMIT_AS: 80 << 20,
        resource.RLIMIT_CPU: 2,
        resource.RLIMIT_FSIZE: INF,
        resource.RLIMIT_NPROC: 0,
        resource.RLIMIT_NOFILE: 8,
    }
    for which, soft, top in call_limits(LIMITS, 100 << 20, hard):
        if hard[which] != INF:
            assert soft == top <= hard[which], (which, soft, top)
