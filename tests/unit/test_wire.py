"""Length-prefixed JSON frames: exact bytes, caps on every read, strict decoding."""

from __future__ import annotations

import os

import pytest

from faas_sandbox.engine import wire


def test_frame_is_big_endian_length_then_compact_utf8_json() -> None:
    assert wire.encode({"a": [1, "é"]}) == b'\x00\x00\x00\x0e{"a":[1,"\xc3\xa9"]}'


def test_lone_surrogates_fall_back_to_ascii_escapes() -> None:
    body = wire.dumps("\ud800")
    assert body == b'"\\ud800"' and wire.loads(body) == "\ud800"


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b"-Infinity", b"\xff", b"{", b""])
def test_loads_refuses_non_strict_json(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.loads(body)


def test_loads_turns_deep_nesting_into_a_wire_error() -> None:
    with pytest.raises(wire.WireError, match="RecursionError"):
        wire.loads(b"[" * 100_000 + b"]" * 100_000)


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError):
        wire.dumps(float("nan"))


def test_frame_buffer_reassembles_frames_split_anywhere() -> None:
    data = wire.encode({"id": 1}) + wire.encode([2, 3]) + wire.encode("x" * 300)
    buf = wire.FrameBuffer(1024)
    bodies = []
    for i in range(len(data)):
        bodies += buf.feed(data[i:i + 1])
    assert [wire.loads(b) for b in bodies] == [{"id": 1}, [2, 3], "x" * 300]
    assert len(buf) == 0


def test_frame_buffer_refuses_oversize_header_before_the_body_arrives() -> None:
    buf = wire.FrameBuffer(10)
    with pytest.raises(wire.WireError, match="over the cap of 10"):
        buf.feed(wire.HEADER.pack(11))


def test_read_frame_over_a_pipe() -> None:
    r, w = os.pipe()
    try:
        wire.write_frame(w, {"ok": True})
        wire.write_all(w, wire.HEADER.pack(100) + b"{}")
        os.close(w)
        w = -1
        assert wire.read_frame(r, 64) == {"ok": True}
        with pytest.raises(wire.WireError, match="over the cap"):
            wire.read_frame(r, 64)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_read_frame_eof_before_header_is_none_and_inside_a_frame_is_an_error() -> None:
    r, w = os.pipe()
    os.close(w)
    assert wire.read_frame(r, 64) is None
    os.close(r)
    r, w = os.pipe()
    wire.write_all(w, wire.HEADER.pack(10) + b"{}")
    os.close(w)
    with pytest.raises(wire.WireError, match="ended inside a frame"):
        wire.read_frame(r, 64)
    os.close(r)
