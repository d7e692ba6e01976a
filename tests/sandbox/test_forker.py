"""The forker: fork-ahead spares, concurrency, death and restart, shutdown with calls running."""

from __future__ import annotations

import glob
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psutil
import pytest

from faas_sandbox import EngineError, ErrorKind, Sandbox
from tests.sandbox.waiting import wait_for

CONVERT = "def convert(celsius):\n    return (celsius * 9/5) + 32\n"


def _spares(sb: Sandbox) -> list[int]:
    return list(sb._stats()["spares"])


def test_idle_forker_keeps_prefork_spares_ready(make_sandbox: Any) -> None:
    sb = make_sandbox(prefork=2)
    spares = wait_for(lambda: len(_spares(sb)) == 2 and _spares(sb))
    for pid in spares:
        assert wait_for(lambda pid=pid: psutil.Process(pid).name() == "faas-spare")


def test_a_spare_runs_exactly_one_call(make_sandbox: Any) -> None:
    sb = make_sandbox(prefork=1)
    sb.call(CONVERT, "convert", [1])  # compiled: spares forked from now on carry the code
    pids = []
    for i in range(4):
        spare = wait_for(lambda: _spares(sb))[0]
        identity = sb._probe("identity").value
        assert identity["pid"] == spare  # the call went to the waiting spare ...
        pids.append(spare)
        assert sb.call(CONVERT, "convert", [i]).ok
    assert len(set(pids)) == 4  # ... and no spare was ever reused
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).ppid() != sb._forker_pid


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of process ``pid`` contains ``needle``."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("r") or line.rstrip().endswith(("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


def test_children_hold_no_function_code_but_their_own(make_sandbox: Any) -> None:
    sb = make_sandbox(prefork=2)
    needle = f"secret-{uuid.uuid4().hex}"
    source = f"def f():\n    return {needle!r}\n"
    assert sb.call(source, "f").value == needle
    assert sb.call(source, "f").value == needle  # the second call ran the cached code
    assert _memory_holds(os.getpid(), needle.encode())  # the scan finds what is there
    assert not _memory_holds(sb._forker_pid, needle.encode())  # never sent to the forker
    spares = wait_for(lambda: len(_spares(sb)) == 2 and _spares(sb))
    if os.geteuid() == 0:  # spares are not dumpable: only root may read their memory
        for pid in spares:  # forked after both calls, ready for the next one
            assert not _memory_holds(pid, needle.encode())


def test_spares_that_die_unused_are_made_up_by_the_next_call(make_sandbox: Any) -> None:
    sb = make_sandbox(prefork=2)
    spares = wait_for(lambda: len(_spares(sb)) == 2 and _spares(sb))
    for pid in spares:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not set(spares) & set(_spares(sb)))  # EXIT reports took them out
    assert sb.call(CONVERT, "convert", [21]).value == 69.8
    refilled = wait_for(lambda: len(_spares(sb)) == 2 and _spares(sb))
    assert not set(spares) & set(refilled)


def test_prefork_zero_forks_on_demand(make_sandbox: Any) -> None:
    sb = make_sandbox(prefork=0)
    assert sb.call(CONVERT, "convert", [21]).value == 69.8
    stats = sb._stats()
    assert stats["spares"] == [] and stats["running"] == []


def test_many_threads_share_one_sandbox(engine: Sandbox) -> None:
    def one(i: int) -> tuple[int, Any]:
        return i, engine.call(CONVERT, "convert", [i])

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(one, range(60)))
    for i, out in results:
        assert out.ok, out
        assert out.value == (i * 9 / 5) + 32


def test_slow_calls_do_not_block_fast_ones(engine: Sandbox) -> None:
    slow: list[Any] = []
    t = threading.Thread(
        target=lambda: slow.append(
            engine.call("import time\ndef f():\n    time.sleep(1.0)\n    return 'slow'\n", "f")
        )
    )
    t.start()
    t0 = time.monotonic()
    fast = engine.call(CONVERT, "convert", [21])
    fast_s = time.monotonic() - t0
    t.join()
    assert fast.value == 69.8 and slow[0].value == "slow"
    assert fast_s < 0.9  # answered while the slow call was still sleeping


def test_forker_death_fails_pending_calls_and_the_next_call_restarts_it(make_sandbox: Any) -> None:
    sb = make_sandbox()
    first_pid = sb._forker_pid
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sb._probe("sleep")))
    t.start()
    wait_for(lambda: sb._stats()["running"])
    os.kill(first_pid, signal.SIGKILL)
    t.join(10)
    assert result[0].error_kind is ErrorKind.CRASH
    assert result[0].message.startswith("sandbox forker died")
    assert glob.glob(f"/dev/shm/faas-sandbox-{first_pid}-*")  # it could not clean up ...
    out = sb.call(CONVERT, "convert", [21])
    assert out.value == 69.8 and sb._forker_pid != first_pid
    assert not glob.glob(f"/dev/shm/faas-sandbox-{first_pid}-*")  # ... its successor did


def test_children_die_with_their_forker(make_sandbox: Any) -> None:
    sb = make_sandbox()
    t = threading.Thread(target=lambda: sb._probe("sleep"))
    t.start()
    child_pid = wait_for(lambda: sb._stats()["running"])[0]
    os.kill(sb._forker_pid, signal.SIGKILL)
    t.join(10)
    assert wait_for(
        lambda: (
            not psutil.pid_exists(child_pid)
            or psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
        )
    )


def test_close_kills_running_calls_and_leaves_nothing(make_sandbox: Any) -> None:
    sb = make_sandbox()
    forker = sb._forker_pid
    result: list[Any] = []
    t = threading.Thread(target=lambda: result.append(sb._probe("sleep")))
    t.start()
    child_pid = wait_for(lambda: sb._stats()["running"])[0]
    t0 = time.monotonic()
    sb.close()
    t.join(10)
    assert time.monotonic() - t0 < 5
    assert result[0].error_kind is ErrorKind.CRASH
    assert result[0].message == "sandbox closed while the call was running"
    assert not psutil.pid_exists(forker) and not psutil.pid_exists(child_pid)


def test_calling_a_closed_sandbox_raises(make_sandbox: Any) -> None:
    sb = make_sandbox()
    sb.close()
    with pytest.raises(EngineError, match="closed"):
        sb.call(CONVERT, "convert", [1])


def test_children_inherit_no_threading_or_seccomp_builder(engine: Sandbox) -> None:
    """The filter is built in a throwaway child: pyseccomp imports subprocess and threading,
    whose fork hook would otherwise run in every sandbox child (~110 page faults each)."""
    loaded = engine._probe("modules").value
    assert "faas_sandbox.engine.child" in loaded  # the probe saw the real module table
    assert not {"threading", "subprocess", "pyseccomp", "ctypes.util"} & set(loaded)
    assert not {"shutil", "tempfile", "zlib", "bz2", "lzma"} & set(loaded)  # 30 mappings
    with open(f"/proc/{engine._forker_pid}/maps") as maps:
        assert "libseccomp" not in maps.read()


def test_features_report_isolation(engine: Sandbox) -> None:
    features = engine.features
    assert features["pidfd"] is True and features["prefork"] == 1
    if os.geteuid() == 0:
        assert features["drop_privileges"] is True
        assert (features["child_uid"], features["child_gid"]) == (65534, 65534)
