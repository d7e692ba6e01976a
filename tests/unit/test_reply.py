"""Bounded decoding of Colonies replies: no recursion errors, caps hold, ids salvaged."""

from __future__ import annotations

import base64
import json
import sys

import pytest

from faas_sandbox.colonies.reply import (
    DecodeError,
    Unreadable,
    check_shape,
    decode_reply,
    loads,
    read_capped,
    salvage,
    salvage_list,
    split_array,
)
from faas_sandbox.errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable

PID = "ab" * 32


def envelope(payload: bytes, *, error: bool = False, kind: str = "assignprocessmsg") -> bytes:
    return json.dumps(
        {
            "payloadtype": "error" if error else kind,
            "payload": base64.b64encode(payload).decode(),
            "error": error,
        }
    ).encode()


def process(args: object, raw_args: str = "") -> bytes:
    """A process as the server writes it: pretty-printed, processid first; ``raw_args`` is
    JSON text put in place of args (nesting Python's json could not write)."""
    text = json.dumps(
        {
            "processid": PID,
            "assignedexecutorid": "me",
            "state": 1,
            "spec": {"funcname": "execute", "args": "@ARGS@" if raw_args else args},
        },
        indent=2,
    )
    return text.replace('"@ARGS@"', raw_args).encode()


def nested(depth: int) -> object:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_plain_reply_decodes():
    assert decode_reply(envelope(process([1, "x"])), 200)["spec"]["args"] == [1, "x"]


def test_a_spec_nested_2000_deep_is_unreadable_with_the_id_salvaged():
    limit = sys.getrecursionlimit()
    body = envelope(process(None, deep_text(2000)))
    with pytest.raises(ReplyUnreadable, match="nested deeper than 64") as info:
        decode_reply(body, 200)
    assert info.value.fields == {"processid": PID}
    assert sys.getrecursionlimit() == limit


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_depth_is_checked_without_recursion(depth):
    with pytest.raises(DecodeError, match="nested deeper"):
        loads(deep_text(depth).encode())


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"a": "[" * 500 + '\\"[[' + "{" * 100})
    check_shape(text.encode())
    assert loads(text)["a"].startswith("[[[")


def test_node_count_is_capped_before_parsing():
    with pytest.raises(DecodeError, match="more than 100 values"):
        loads(json.dumps([[]] * 200).encode(), max_nodes=100)


def test_size_is_capped_before_parsing():
    with pytest.raises(DecodeError, match="over the limit of 10"):
        loads(b"[1,2,3,4,5,6]", max_bytes=10)


def test_nan_is_refused():
    with pytest.raises(DecodeError, match="not valid JSON"):
        loads(b"[NaN]")


def test_read_capped_stops_at_the_cap_and_keeps_the_prefix():
    chunks = iter([b"a" * 10, b"b" * 10, b"c" * 10])
    body, truncated = read_capped(chunks, 15)
    assert (body, truncated) == (b"a" * 10 + b"b" * 5, True)
    assert next(chunks) == b"c" * 10  # nothing read past the cap
    assert read_capped([b"ab", b"cd"], 4) == (b"abcd", False)


def test_a_reply_over_the_cap_still_yields_its_process_id():
    body = envelope(process(["x" * 100_000]))
    with pytest.raises(ReplyUnreadable, match="assignprocessmsg reply over 5000 bytes") as info:
        decode_reply(body[:5000], 200, truncated=True)
    assert info.value.fields == {"processid": PID}


def test_server_errors_and_database_errors():
    error = json.dumps({"status": 404, "message": "No process available"}).encode()
    with pytest.raises(ColoniesRefused) as info:
        decode_reply(envelope(error, error=True), 404)
    assert info.value.status == 404
    down = json.dumps(
        {"status": 403, "message": "dial tcp 1.2.3.4:5: connect: connection refused"}
    ).encode()
    with pytest.raises(ColoniesUnreachable):
        decode_reply(envelope(down, error=True), 403)


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"", 200, ColoniesRefused),
        (b"<html>", 502, ColoniesUnreachable),
        (b'{"payload": "!!", "error": false}', 200, ColoniesRefused),
        (deep_text(5000).encode(), 200, ColoniesRefused),
        (b'{"payload": 5, "error": false}', 200, ColoniesRefused),
    ],
)
def test_a_non_colonies_body_is_classified(body, status, kind):
    with pytest.raises(kind, match="not a Colonies reply"):
        decode_reply(body, status)


def test_salvage_reads_only_top_level_fields():
    tricky = (
        b'{"spec": {"processid": "fake"}, "note": "\\"processid\\": \\"fake2\\"",'
        b' "processid": "real", "state": 1}'
    )
    assert salvage(tricky) == {"processid": "real"}
    assert salvage(b'{"processid": "cut') == {}
    assert salvage(b"[[[[[[") == {}


def test_a_listing_with_one_unreadable_process_spoils_only_that_one():
    good = json.loads(process([1]))
    bad = process(None, deep_text(300)).decode()
    raw = ("[" + json.dumps(good) + "," + bad + "," + json.dumps(good) + "]").encode()
    with pytest.raises(ReplyUnreadable) as info:
        decode_reply(envelope(raw, kind="getprocessesmsg"), 200)
    listing = salvage_list(info.value)
    assert listing[0] == good and listing[2] == good
    assert isinstance(listing[1], Unreadable) and listing[1].fields == {"processid": PID}


def test_split_array_handles_a_cut_short_listing():
    raw = json.dumps([{"a": "]["}, {"b": [1, 2]}, {"c": 3}]).encode()
    assert split_array(raw) == [b'{"a": "]["}', b'{"b": [1, 2]}', b'{"c": 3}']
    assert split_array(raw[:20]) == [b'{"a": "]["}', b'{"b": ']
