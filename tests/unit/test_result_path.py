"""The result's way out: the child's output element crosses the wire, the caller checks its
shape, and the executor splices its bytes into the close message without decoding them."""

from __future__ import annotations

import json
import os
import random
import re
import threading

import pytest

from faas_sandbox import Limits, Usage, element
from faas_sandbox.colonies.client import message_bytes
from faas_sandbox.element import Element, well_formed
from faas_sandbox.engine import wire
from faas_sandbox.engine.outcome import ErrorKind, Outcome
from faas_sandbox.engine.verdict import Seen, classify
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.executor.loop import Executor

from .test_executor import STORE, FakeColonies, FakeS3, FakeSandbox

LIMITS = Limits(wall_seconds=2.0, cpu_seconds=1, memory_mb=64)


@pytest.mark.parametrize(
    "data",
    [
        b"0",
        b"-1",
        b"69.8",
        b"1e+300",
        b"-0.5E-3",
        b'""',
        b'"a"',
        b'"\\"21\\""',
        b'"\\u0000\\ud800\\\\/\\b\\f\\n\\r\\t"',
        '"café"'.encode(),
    ],
)
def test_one_json_number_or_string_is_well_formed(data):
    assert well_formed(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"01",
        b"1.",
        b"+1",
        b"NaN",
        b"Infinity",
        b"true",
        b"null",
        b"[1]",
        b'{"a":1}',
        b'"a"b"',
        b'"a',
        b'a"',
        b'"a\\"',
        b'"\\x"',
        b'"\\u12"',
        b'"a\nb"',
        b'"a\x00b"',
        b" 1",
        b"1 ",
        b'"a","b"',
        b'1],"processid":"other","out":[2',
        b'"a"]}',
        b"1\n",
    ],
)
def test_anything_else_is_not(data):
    assert not well_formed(data)


def test_an_element_result_is_kept_as_its_bytes_and_read_only_on_demand():
    raw = b'"[1,\\"x\\"]"'
    seen = Seen(wire.Result("ok", 0, 0.001, 1, raw, "", ""))
    out = classify(seen, Usage(), LIMITS, as_element=True)
    assert out.ok and out.element == raw and isinstance(out.element, Element)
    assert out.value == [1, "x"] and out.value_json == b'[1,"x"]'  # the reading rule


@pytest.mark.parametrize("raw", [b"[1]", b'"a"]}', b"NaN", b'1,"processid":"p2"'])
def test_a_child_that_sends_anything_but_one_element_crashed(raw):
    seen = Seen(wire.Result("ok", 0, 0.001, 1, raw, "", ""))
    out = classify(seen, Usage(), LIMITS, as_element=True)
    assert (out.error_kind, out.message) == (
        ErrorKind.CRASH,
        "sent a malformed result (not one output element)",
    )
    assert classify(seen, Usage(), LIMITS).ok  # without element=True the bytes are JSON


def test_the_element_flag_crosses_the_wire_and_unknown_flags_are_refused():
    r, w = os.pipe()
    try:
        frame = wire.encode_request(
            wire.SOURCE, b"f", 0, wire.pack_limits(LIMITS), b"", b"[]", element=True
        )
        wire.write_all(w, frame)
        assert wire.read_request(r).element is True
        bad = bytearray(frame)
        bad[wire.FRAME.size + 1] = 2  # a flag nobody defined
        with pytest.raises(wire.WireError):
            wire.decode_request_head(bytes(bad[: wire.REQUEST_HEAD_BYTES]))
    finally:
        os.close(r)
        os.close(w)


def test_message_bytes_splices_elements_and_encodes_the_rest_as_before():
    msg = {
        "msgtype": "closesuccessfulmsg",
        "processid": "p1",
        "out": [Element(b'"{\\"a\\":\\"\\\\ud800\\"}"'), 3, "é"],
    }
    data = message_bytes(msg)
    assert data == (
        b'{"msgtype": "closesuccessfulmsg", "processid": "p1", "out": ['
        b'"{\\"a\\":\\"\\\\ud800\\"}", 3, "\\u00e9"]}'
    )
    assert json.loads(data)["out"] == ['{"a":"\\ud800"}', 3, "é"]
    plain = {"msgtype": "closesuccessfulmsg", "processid": "p1", "out": [69.8]}
    assert message_bytes(plain) == json.dumps(plain).encode()


# -- the executor never decodes a result -----------------------------------------------------

ELEMENTS = {  # what a child sends for: a structure, a plain string, a JSON-text string
    "structure": b'"{\\"k\\":[1,\\"\\\\udc80\\"]}"',
    "plain": '"café \\u0000 ☃"'.encode(),
    "jsontext": b'"\\"21\\""',
}


class ElementSandbox(FakeSandbox):
    """Returns what a child sends (element bytes), never a Python value."""

    def call(
        self, source, function, args=(), kwargs=None, maxexectime=None, *, element=False
    ) -> Outcome:
        assert element
        return Outcome(True, usage=Usage(0.001, 0.001, 1), element=ELEMENTS[function])


class RawColonies(FakeColonies):
    """Records the close message's bytes as the real client would send them."""

    def __init__(self) -> None:
        super().__init__()
        self.files.update({name: f"def {name}():\n    return 1\n" for name in ELEMENTS})
        self.sent: dict[str, bytes] = {}

    def close(self, processid, out):
        self.sent[processid] = message_bytes(
            {"msgtype": "closesuccessfulmsg", "processid": processid, "out": out}
        )
        self._record("close", processid, out)


def test_the_executor_splices_the_childs_element_without_decoding_it(monkeypatch):
    def undecodable(self):
        raise AssertionError("the executor decoded a result")

    monkeypatch.setattr(Outcome, "value", property(undecodable))
    monkeypatch.setattr(Outcome, "value_json", property(undecodable))
    real_loads = json.loads
    decoded: list[object] = []

    def spying_loads(text, *args, **kwargs):
        if any(
            e in (text if isinstance(text, bytes) else str(text).encode("utf-8", "replace"))
            for e in ELEMENTS.values()
        ):
            decoded.append(text)
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spying_loads)
    monkeypatch.setattr(element, "read", lambda item: decoded.append(item))
    client = RawColonies()
    code = CodeStore(client, STORE, reader=FakeS3(client.files))
    executor = Executor(client, ElementSandbox(), code, name="t", concurrency=2, grace=1)
    thread = threading.Thread(target=executor.run)
    thread.start()
    try:
        for name in ELEMENTS:
            client.submit(name, {"function": name})
        calls = client.wait_for(3, timeout=30)
    finally:
        executor.request_stop()
        executor.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert sorted(c[1] for c in calls if c[0] == "close") == sorted(ELEMENTS)
    assert decoded == []
    for name, raw in ELEMENTS.items():
        assert client.sent[name] == (
            b'{"msgtype": "closesuccessfulmsg", "processid": "'
            + name.encode()
            + b'", "out": ['
            + raw
            + b"]}"
        )
    monkeypatch.undo()
    outs = {name: json.loads(data)["out"] for name, data in client.sent.items()}
    assert outs == {
        "structure": ['{"k":[1,"\\udc80"]}'],
        "plain": ["café \x00 ☃"],
        "jsontext": ['"21"'],
    }  # docs/protocol.md, Results


# The shape rule written as one regex (how it was first checked): short, obviously right, and
# far too slow on forged escapes for the caller (one match object per escape); kept here as
# the oracle that the fast check must agree with.
_ORACLE_STRING = re.compile(
    rb'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
)


def _oracle(data: bytes) -> bool:
    return bool(
        (len(data) <= element.MAX_NUMBER_BYTES and element._NUMBER.fullmatch(data))
        or _ORACLE_STRING.fullmatch(data)
    )


def test_the_fast_string_check_agrees_with_the_one_regex_rule():
    rng = random.Random(8)
    alphabet = [b'"', b"\\", b"u", b"0", b"F", b"a", b"n", b"/", b"\n", b"\x1f", b"\x7f", b"\xc3"]
    disagree = []
    for _ in range(40_000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.8:
            data = b'"' + data + b'"'
        if well_formed(data) != _oracle(data):
            disagree.append(data)
    assert disagree == []


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'"' + b"\\\\" * 3 + b'"', True),  # escaped backslashes only
        (b'"' + b"\\\\" * 3 + b'\\"', False),  # ... and then the closing quote is escaped
        (b'"\\\\\\"x"', True),  # an escaped backslash, then an escaped quote
        (b'"\\\\"x"', False),  # an escaped backslash, then a quote that ends the string
        (b'"\\u00e9\\uD83D"', True),
        (b'"\\u00g9"', False),
        (b'"' + b"\\n" * 50_000 + b'"', True),
        (b'"' + b"\\n" * 50_000 + b'\\"', False),
        (b'"' + b"\\n" * 50_000 + b"\\q" + b'"', False),
    ],
)
def test_escapes_pair_from_the_left_as_a_json_reader_reads_them(data, expected):
    assert well_formed(data) is expected
    assert _oracle(data) is expected
