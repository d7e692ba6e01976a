"""process.classify / parse_result / admit, fed literal wait statuses and bytes (no fork).

Raw wait statuses: 9 = killed by SIGKILL, 24 = SIGXCPU, 11 = SIGSEGV, 0x300 = exit code 3.
"""

from __future__ import annotations

import pytest

from faas_sandbox import ErrorKind, Usage
from faas_sandbox.engine import wire
from faas_sandbox.engine.child import ExitCode
from faas_sandbox.engine.process import ExitInfo, Killed, admit, classify, parse_result, result_cap

USAGE = Usage(wall_s=0.5, cpu_s=0.25, max_rss_bytes=1 << 24)


def verdict(info: ExitInfo, usage: Usage = USAGE) -> tuple[ErrorKind | None, str]:
    out = classify(info, usage, wall_seconds=2.0, cpu_seconds=1)
    assert out.usage == usage
    return out.error_kind, out.message


def test_a_well_formed_ok_frame_is_the_verdict() -> None:
    out = classify(ExitInfo(0, {"ok": True, "value": 69.8, "stdout": "hi\n"}), USAGE, 2.0, 1)
    assert (out.ok, out.value, out.stdout, out.error_kind) == (True, 69.8, "hi\n", None)


def test_a_child_reported_failure_keeps_kind_message_and_stdout() -> None:
    frame = {"ok": False, "kind": "memory", "message": "memory limit exceeded", "stdout": "x"}
    out = classify(ExitInfo(0, frame), USAGE, 2.0, 1)
    assert (out.error_kind, out.message, out.stdout) == (ErrorKind.MEMORY,
                                                          "memory limit exceeded", "x")


def test_sigxcpu_is_cpu() -> None:
    assert verdict(ExitInfo(24)) == (ErrorKind.CPU, "CPU-time limit of 1 s exceeded")


def test_sigkill_we_sent_at_the_deadline_is_timeout() -> None:
    assert verdict(ExitInfo(9, killed=Killed.TIMEOUT)) == (
        ErrorKind.TIMEOUT, "wall-clock limit of 2 s exceeded")


def test_sigkill_we_sent_on_overflow_is_output() -> None:
    kind, _ = verdict(ExitInfo(9, killed=Killed.OVERFLOW))
    assert kind is ErrorKind.OUTPUT


def test_overflow_found_after_a_clean_exit_is_still_output() -> None:
    kind, _ = verdict(ExitInfo(0, killed=Killed.OVERFLOW))
    assert kind is ErrorKind.OUTPUT


def test_sigkill_at_shutdown_is_a_crash() -> None:
    assert verdict(ExitInfo(9, killed=Killed.SHUTDOWN)) == (
        ErrorKind.CRASH, "killed by the sandbox: it is shutting down")


def test_sigkill_not_ours_after_the_cpu_limit_is_the_hard_rlimit_cpu() -> None:
    kind, _ = verdict(ExitInfo(9), Usage(wall_s=3.0, cpu_s=1.9))
    assert kind is ErrorKind.CPU


def test_sigkill_not_ours_otherwise_is_likely_the_oom_killer() -> None:
    assert verdict(ExitInfo(9)) == (
        ErrorKind.CRASH, "killed by SIGKILL not sent by the sandbox (likely the kernel OOM killer)")


def test_other_signals_are_crashes_named_by_signal() -> None:
    assert verdict(ExitInfo(11)) == (ErrorKind.CRASH, "killed by signal SIGSEGV")
    assert verdict(ExitInfo(11 | 0x80)) == (ErrorKind.CRASH, "killed by signal SIGSEGV")


def test_exit_code_without_a_result_is_a_crash() -> None:
    assert verdict(ExitInfo(0x300)) == (ErrorKind.CRASH, "exited with code 3 without a result")
    assert verdict(ExitInfo(0)) == (ErrorKind.CRASH, "exited with code 0 without a result")


def test_reserved_exit_codes_say_what_failed() -> None:
    kind, message = verdict(ExitInfo(ExitCode.SETUP << 8))
    assert kind is ErrorKind.CRASH
    assert message == ("sandbox child could not set up its isolation (uid, session, fds or "
                       "seccomp) (exit code 72)")


def test_malformed_frame_is_a_crash_that_says_so() -> None:
    assert verdict(ExitInfo(0, frame_error="frame is not a result")) == (
        ErrorKind.CRASH, "exited with code 0 after sending a malformed result "
        "(frame is not a result)")


def test_a_real_signal_beats_our_kill_reason() -> None:
    # SIGXCPU landed before our SIGKILL: the status tells the truth.
    assert verdict(ExitInfo(24, killed=Killed.TIMEOUT))[0] is ErrorKind.CPU


# -- parse_result: the child's bytes are hostile -------------------------------------------

def frame(body: bytes) -> bytes:
    return wire.pack(body)


def test_parse_result_accepts_ok_and_error_frames() -> None:
    assert parse_result(frame(b'{"ok":true,"stdout":"","value":[1]}')) == (
        {"ok": True, "stdout": "", "value": [1]}, None)
    ok, _ = parse_result(frame(b'{"ok":false,"kind":"runtime","message":"E","stdout":""}'))
    assert ok is not None and ok["kind"] == "runtime"


def test_parse_result_of_nothing_is_no_frame_and_no_error() -> None:
    assert parse_result(b"") == (None, None)


@pytest.mark.parametrize(("data", "why"), [
    (b"\x00\x00", "not exactly one frame"),
    (wire.pack(b"{}") + b"x", "not exactly one frame"),
    (wire.pack(b'{"ok":true,"stdout":""}'), "not a result"),
    (wire.pack(b'{"ok":false,"kind":"timeout","message":"","stdout":""}'), "not a result"),
    (wire.pack(b'{"ok":false,"kind":"crash","message":"","stdout":""}'), "not a result"),
    (wire.pack(b'{"ok":1,"value":1,"stdout":""}'), "not a result"),
    (wire.pack(b'{"ok":true,"value":NaN,"stdout":""}'), "bad frame"),
    (wire.pack(b'{"ok":true,"value":' + b"[" * 400 + b"]" * 400 + b',"stdout":""}'),
     "RecursionError"),
])
def test_parse_result_refuses_what_a_child_must_not_send(data: bytes, why: str) -> None:
    parsed, error = parse_result(data)
    assert parsed is None and error is not None and why in error


def test_result_cap_covers_a_full_result_and_escaped_stdout() -> None:
    assert result_cap(100, 10) == 100 + 60 + 64 * 1024


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


def test_a_frame_with_the_childs_own_usage_is_still_one_well_formed_result() -> None:
    from faas_sandbox.engine.child import with_usage
    from faas_sandbox.engine.process import self_usage

    data = with_usage(wire.pack(b'{"ok":true,"stdout":"","value":[1,2]}'))
    frame, error = parse_result(data)
    assert error is None and frame is not None and frame["value"] == [1, 2]
    cpu, rss = self_usage(frame)  # type: ignore[misc]
    assert cpu > 0 and rss > 1 << 20  # this very test process's own rusage


@pytest.mark.parametrize("usage", [None, [], {"cpu_s": "1", "max_rss_bytes": 1},
                                   {"cpu_s": -1.0, "max_rss_bytes": 1},
                                   {"cpu_s": True, "max_rss_bytes": 1},
                                   {"cpu_s": 0.1, "max_rss_bytes": 1.5},
                                   {"cpu_s": 0.1}])
def test_malformed_self_reported_usage_is_ignored(usage: object) -> None:
    from faas_sandbox.engine.process import self_usage

    frame = {"ok": True, "value": 1, "stdout": ""}
    if usage is not None:
        frame["usage"] = usage
    assert self_usage(frame) is None  # the forker then waits for wait4 as before
