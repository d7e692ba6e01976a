"""The typed frames: exact bytes, lengths checked against the limits they travel with."""

from __future__ import annotations

import os

import pytest

from faas_sandbox import Limits
from faas_sandbox.engine import wire


def _request(
    kind: int = wire.SOURCE,
    function: bytes = b"f",
    body: bytes = b"def f(): pass",
    args: bytes = b"[[1],{}]",
    limits: Limits = Limits(),
) -> bytes:
    return wire.encode_request(
        kind,
        function,
        wire.module_mask(frozenset({"math", "json"})),
        wire.pack_limits(limits),
        body,
        args,
    )


def test_frame_is_big_endian_length_then_type_then_payload() -> None:
    assert wire.frame(wire.CODE, b"ab") == b"\x00\x00\x00\x03\x02ab"


def test_a_request_round_trips_over_a_pipe_with_its_args_bytes_untouched() -> None:
    limits = Limits(wall_seconds=1.5, cpu_seconds=2, memory_mb=64)
    args = '[["é", 1.0],{"k":null}]'.encode()
    r, w = os.pipe()
    try:
        wire.write_all(w, _request(args=args, limits=limits))
        os.close(w)
        w = -1
        request = wire.read_request(r)
        assert request == wire.Request(
            wire.SOURCE, "f", frozenset({"math", "json"}), limits, b"def f(): pass", args
        )
        assert wire.read_request(r) is None  # clean EOF: no request
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_request(body=b"x" * 101, limits=Limits(max_source_bytes=100)), "malformed"),
        (_request(args=b"[" * 65, limits=Limits(max_args_bytes=64)), "malformed"),
        (_request(kind=wire.PROBE, body=b"x"), "malformed"),
        (_request(kind=9), "malformed"),
        (_request(function=b"f" * (wire.MAX_FUNCTION_BYTES + 1)), "malformed"),
    ],
)
def test_request_lengths_are_checked_against_their_limits(data: bytes, why: str) -> None:
    with pytest.raises(wire.WireError, match=why):
        wire.decode_request_head(data[: wire.REQUEST_HEAD_BYTES])


def test_a_request_cut_short_is_an_error_not_a_request() -> None:
    r, w = os.pipe()
    try:
        os.write(w, _request()[:-3])
        os.close(w)
        with pytest.raises(wire.WireError, match="ended"):
            wire.read_request(r)
    finally:
        os.close(r)


def test_module_masks_round_trip() -> None:
    for modules in (frozenset(), frozenset({"math"}), frozenset(wire.MODULE_ORDER)):
        assert wire.mask_modules(wire.module_mask(modules)) == modules


def test_result_cap_covers_a_full_result_stdout_and_a_capped_message() -> None:
    biggest = wire.encode_result(5, 0, 1.0, 1, b"", b"s" * 10, "é".encode() * 2000)
    assert len(biggest) - 4 <= wire.result_cap(0, 10)
    ok = wire.encode_result(0, 0, 1.0, 1, b"v" * 100, b"s" * 10, b"")
    assert len(ok) - 4 <= wire.result_cap(100, 10)
