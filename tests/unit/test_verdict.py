"""verdict.classify / refusal / admit and wire.decode_result, fed literal values (no fork).

Raw wait statuses: 9 = killed by SIGKILL, 24 = SIGXCPU, 11 = SIGSEGV, 0x300 = exit code 3.
"""

from __future__ import annotations

import pytest

from faas_sandbox import ErrorKind, Limits, Usage
from faas_sandbox.engine import wire
from faas_sandbox.engine.verdict import ExitCode, Killed, Refusal, Seen, admit, classify, refusal

USAGE = Usage(wall_s=0.5, cpu_s=0.25, max_rss_bytes=1 << 24)
LIMITS = Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=64)


def verdict(seen: Seen, usage: Usage = USAGE) -> tuple[ErrorKind | None, str]:
    out = classify(seen, usage, LIMITS)
    assert out.usage == usage
    return out.error_kind, out.message


def result(
    kind: str = "ok", value: bytes = b"69.8", stdout: str = "", message: str = "", flags: int = 0
) -> wire.Result:
    return wire.Result(kind, flags, 0.001, 1 << 20, value, stdout, message)


def test_an_ok_result_is_the_verdict_and_its_value_stays_json_until_read() -> None:
    out = classify(Seen(result(stdout="hi\n")), USAGE, LIMITS)
    assert (out.ok, out.value_json, out.stdout, out.error_kind) == (True, b"69.8", "hi\n", None)
    assert out.value == 69.8


def test_a_child_reported_failure_keeps_kind_message_and_stdout() -> None:
    seen = Seen(result("memory", b"", "x", "memory limit exceeded"))
    assert verdict(seen) == (ErrorKind.MEMORY, "memory limit exceeded")


def test_sigxcpu_is_cpu_and_during_compile_it_is_compile() -> None:
    assert verdict(Seen(status=24)) == (ErrorKind.CPU, "CPU-time limit of 1 s exceeded")
    assert verdict(Seen(status=24, compiling=True)) == (
        ErrorKind.COMPILE,
        "compile exceeded its CPU limit of 1 s",
    )


def test_our_kill_at_the_deadline_is_timeout_and_during_compile_it_is_compile() -> None:
    assert verdict(Seen(killed=Killed.TIMEOUT)) == (
        ErrorKind.TIMEOUT,
        "wall-clock limit of 2 s exceeded",
    )
    assert verdict(Seen(status=9, killed=Killed.TIMEOUT, compiling=True)) == (
        ErrorKind.COMPILE,
        "compile exceeded its wall-clock limit of 2 s",
    )


def test_overflow_is_output_whatever_the_status() -> None:
    for status in (None, 0, 9):
        assert verdict(Seen(status=status, killed=Killed.OVERFLOW))[0] is ErrorKind.OUTPUT


def test_sigkill_at_shutdown_is_a_crash() -> None:
    assert verdict(Seen(status=9, killed=Killed.SHUTDOWN)) == (
        ErrorKind.CRASH,
        "killed by the sandbox: it is shutting down",
    )


def test_sigkill_not_ours_after_the_cpu_limit_is_the_hard_rlimit_cpu() -> None:
    """RLIMIT_CPU soft == hard: the kernel's SIGKILL at the limit reads exactly as SIGXCPU."""
    for cpu_s in (1.9, 1.004, 1.0):
        assert (
            verdict(Seen(status=9), Usage(wall_s=3.0, cpu_s=cpu_s))
            == verdict(Seen(status=24), Usage(wall_s=3.0, cpu_s=cpu_s))
            == (ErrorKind.CPU, "CPU-time limit of 1 s exceeded")
        )
    assert verdict(Seen(status=9, compiling=True), Usage(wall_s=3.0, cpu_s=1.0)) == (
        ErrorKind.COMPILE,
        "compile exceeded its CPU limit of 1 s",
    )
    assert verdict(Seen(status=9), Usage(wall_s=3.0, cpu_s=0.999))[0] is ErrorKind.CRASH


def test_sigkill_not_ours_otherwise_is_likely_the_oom_killer() -> None:
    assert verdict(Seen(status=9)) == (
        ErrorKind.CRASH,
        "killed by SIGKILL not sent by the sandbox (likely the kernel OOM killer)",
    )


def test_other_signals_are_crashes_named_by_signal() -> None:
    assert verdict(Seen(status=11)) == (ErrorKind.CRASH, "killed by signal SIGSEGV")
    assert verdict(Seen(status=11 | 0x80)) == (ErrorKind.CRASH, "killed by signal SIGSEGV")


def test_exit_code_without_a_result_is_a_crash() -> None:
    assert verdict(Seen(status=0x300)) == (ErrorKind.CRASH, "exited with code 3 without a result")


def test_reserved_exit_codes_say_what_failed() -> None:
    assert verdict(Seen(status=ExitCode.SETUP << 8)) == (
        ErrorKind.CRASH,
        "sandbox child could not set up its isolation (uid, session, fds or "
        "seccomp) (exit code 72)",
    )


def test_malformed_frames_are_a_crash_that_says_so() -> None:
    assert verdict(Seen(malformed="result frame too short")) == (
        ErrorKind.CRASH,
        "sent a malformed result (result frame too short)",
    )
    assert verdict(Seen(status=0, frame_error="3 bytes that are not a whole frame")) == (
        ErrorKind.CRASH,
        "exited with code 0 after sending a malformed result (3 bytes that are not a whole frame)",
    )


def test_no_status_because_the_forker_is_gone_is_a_crash_with_its_reason() -> None:
    assert verdict(Seen(gone="sandbox closed while the call was running")) == (
        ErrorKind.CRASH,
        "sandbox closed while the call was running",
    )


def test_a_real_signal_beats_an_unknown_kill() -> None:
    assert verdict(Seen(status=24, killed=Killed.SHUTDOWN))[0] is ErrorKind.CPU


# -- refusal: what a failed compile caches ----------------------------------------------------


def _refusal(seen: Seen) -> Refusal | None:
    return refusal(seen, classify(seen, USAGE, LIMITS), LIMITS)


def test_plain_compile_errors_are_refused_under_any_limits() -> None:
    why = _refusal(Seen(result("compile", b"", "", "SyntaxError"), compiling=True))
    assert why == Refusal("SyntaxError") and why.applies(Limits(memory_mb=4096))


def test_limit_refusals_apply_only_up_to_the_limit_they_blew() -> None:
    cpu = _refusal(Seen(status=24, compiling=True))
    timed_out = Seen(status=9, killed=Killed.TIMEOUT, compiling=True)
    busy = Usage(wall_s=2.0, cpu_s=1.0, max_rss_bytes=1 << 24)  # compiled for half its wall
    wall = refusal(timed_out, classify(timed_out, busy, LIMITS), LIMITS)
    mem = _refusal(Seen(result("compile", b"", "", "out", wire.COMPILE_LIMIT), compiling=True))
    assert cpu == Refusal("compile exceeded its CPU limit of 1 s", "cpu_seconds", 1)
    assert wall is not None and wall.limit == "wall_seconds" and wall.value == 2.0
    assert mem is not None and mem.limit == "memory_mb" and mem.value == 64
    assert cpu.applies(LIMITS) and not cpu.applies(Limits(cpu_seconds=5))
    assert not mem.applies(Limits(memory_mb=128))


def test_a_compile_starved_of_cpu_at_the_wall_clock_is_not_cached() -> None:
    starved = Usage(wall_s=2.0, cpu_s=0.99, max_rss_bytes=1 << 24)  # under half its wall
    seen = Seen(status=9, killed=Killed.TIMEOUT, compiling=True)
    out = classify(seen, starved, LIMITS)
    assert out.error_kind is ErrorKind.COMPILE and refusal(seen, out, LIMITS) is None


def test_nothing_is_cached_for_calls_past_their_compile() -> None:
    assert _refusal(Seen(status=24)) is None  # a CPU limit hit while running
    assert _refusal(Seen(result("runtime", b"", "", "E"))) is None


# -- decode_result: the child's bytes are hostile -------------------------------------------


def _payload(
    kind: int, value: bytes = b"", stdout: bytes = b"", message: bytes = b"", cpu: float = 0.1
) -> bytes:
    return wire.encode_result(kind, 0, cpu, 1, value, stdout, message)[wire.FRAME.size :]


def test_decode_result_accepts_ok_and_error_results() -> None:
    assert wire.decode_result(_payload(0, b"[1]", "é".encode())) == wire.Result(
        "ok", 0, 0.1, 1, b"[1]", "é", ""
    )
    assert wire.decode_result(_payload(5, message=b"E")).kind == "runtime"


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\x00\x00", "too short"),
        (_payload(0, b"1") + b"x", "does not add up"),
        (_payload(9, message=b"E"), "does not add up"),  # no kind past the child's own
        (_payload(0), "a value iff ok"),
        (_payload(5, b"1"), "a value iff ok"),
        (_payload(0, b"1", cpu=-1.0), "does not add up"),
    ],
)
def test_decode_result_refuses_what_a_child_must_not_send(payload: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode_result(payload)


def test_a_child_cannot_name_an_engine_fault_kind() -> None:
    assert set(wire.RESULT_KINDS) == {"ok", "compile", "forbidden", "memory", "output", "runtime"}


# -- admit: refusals before anything runs -----------------------------------------------------


def test_admit_passes_calls_within_the_limits() -> None:
    assert admit(100, 100, 100, 100) is None


def test_admit_refuses_big_source_as_compile_and_big_args_as_runtime() -> None:
    src = admit(101, 1, 100, 100)
    assert src is not None and src.error_kind is ErrorKind.COMPILE
    assert src.message == "source is 101 bytes, over the limit of 100 (max_source_bytes)"
    args = admit(1, 101, 100, 100)
    assert args is not None and args.error_kind is ErrorKind.RUNTIME
    assert args.message.startswith("ValueError: arguments are 101 bytes of JSON")
