"""A short hostile mix next to benign calls (bench/hostile_soak.py is the long one, with
numbers): nothing lost, every call ends with its expected kind, the foreign store is never
contacted, the executor stays alive and healthy, its memory returns to where it was."""

from __future__ import annotations

import pytest

import hostile_mix

pytestmark = pytest.mark.colonies


def test_hostile_mix_next_to_benign_calls(stack, tmp_path):
    result = hostile_mix.run(tmp_path / "executor.log", seconds=6, benign_threads=2, concurrency=4)
    report = "\n".join(hostile_mix.summary(result))
    assert result.lost == [], report
    assert result.unexpected == [], report
    assert result.foreign_requests == 0, report
    assert result.executor_alive and result.healthz == 200, report
    ended = sum((p.kinds for p in result.phases), start=hostile_mix.Counter())
    for kind in hostile_mix.KINDS:
        assert ended[kind] >= 1, report
    assert all(p.latencies for p in result.phases), report
    settled = result.rss_mib[len(result.rss_mib) // 3]  # after the benign-only phase
    assert result.rss_mib[-1] - settled < 20, report  # transient peaks while decoding are fine
