"""The C-stack guard's frames and module, without forking (the real overflows, in children, are
tests/sandbox/test_signals.py)."""

from __future__ import annotations

import struct

import pytest

from faas_sandbox import ErrorKind
from faas_sandbox.engine import run, wire


def decode(frame: bytes) -> wire.Result:
    size, kind = wire.FRAME.unpack_from(frame)
    assert kind == wire.RESULT and size == len(frame) - 4
    return wire.decode_result(frame[wire.FRAME.size :])


def test_the_c_module_is_built_for_this_cpu() -> None:
    """CI must run the guard: a checkout without the built module would quietly run without it
    (an overflow then ends as ``crash``)."""
    assert run._stackguard is not None, "faas_sandbox/engine/_stackguard.c is not built"
    assert run._stackguard.supported()


@pytest.mark.parametrize(
    ("phase", "stack", "memory"),
    [
        (
            run.COMPILING,
            (ErrorKind.COMPILE, 0, "source nests too deeply for the compiler"),
            (ErrorKind.COMPILE, wire.COMPILE_LIMIT, "compile exceeded its memory limit"),
        ),
        (
            run.RUNNING,
            (ErrorKind.RUNTIME, 0, "RecursionError: maximum recursion depth exceeded in C"),
            (ErrorKind.MEMORY, 0, "memory limit exceeded"),
        ),
        (
            run.ENCODING,
            (ErrorKind.OUTPUT, 0, "result nests too deeply to encode"),
            (ErrorKind.MEMORY, 0, "memory limit exceeded"),
        ),
    ],
)
def test_each_phase_has_a_stack_frame_and_a_memory_frame(
    phase: int, stack: tuple[ErrorKind, int, str], memory: tuple[ErrorKind, int, str]
) -> None:
    for index, (kind, flags, start) in ((phase * 2, stack), (phase * 2 + 1, memory)):
        res = decode(run.OVERFLOW_FRAMES[index])
        assert (res.kind, res.flags) == (kind, flags)
        assert res.message.startswith(start)
        assert (res.value, res.stdout) == (b"", "")


def test_the_usage_offsets_are_where_the_result_head_keeps_cpu_and_rss() -> None:
    """The handler writes the child's CPU time and peak RSS at these offsets of a frame."""
    frame = bytearray(run.OVERFLOW_FRAMES[2])
    struct.pack_into(">d", frame, run._CPU_AT, 0.375)
    struct.pack_into(">Q", frame, run._RSS_AT, 123 << 20)
    res = decode(bytes(frame))
    assert (res.cpu_s, res.max_rss_bytes) == (0.375, 123 << 20)
    assert res.message == decode(run.OVERFLOW_FRAMES[2]).message


def test_every_frame_fits_the_modules_buffer() -> None:
    assert len(run.OVERFLOW_FRAMES) == 6
    assert all(len(frame) <= 512 for frame in run.OVERFLOW_FRAMES)


def test_arm_refuses_what_is_not_two_c_ints() -> None:
    """(install() is not called here: it would put a SIGSEGV handler into pytest itself.)"""
    guard = run._stackguard
    assert guard is not None
    with pytest.raises(TypeError):
        guard.arm(1)  # type: ignore[call-arg]
    with pytest.raises(OverflowError):
        guard.arm(1 << 80, 0)
