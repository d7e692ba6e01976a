"""Texts for the server and for our own log lines."""

from __future__ import annotations

from faas_sandbox.executor.texts import for_log, for_server, has_surrogate


def test_for_server_escapes_only_what_the_server_refuses_or_alters():
    assert for_server("a\x00b\ud800c\nd\té") == "a\\x00b\\ud800c\nd\té"
    assert for_server("plain") == "plain"


def test_for_log_makes_one_unforgeable_line():
    forged = "boom\n2026-01-01 INFO call x: ok\r\x1b[31m\u2028\x85\x00"
    line = for_log(forged)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == "boom\\x0a2026-01-01 INFO call x: ok\\x0d\\x1b[31m\\u2028\\x85\\x00"


def test_for_log_clips():
    assert for_log("x" * 1000, limit=10) == "x" * 10 + "..."


def test_has_surrogate_looks_everywhere_iteratively():
    assert has_surrogate({"k": [1, ["ok", "\udc80"]]})
    assert has_surrogate({"\ud800": 1})
    assert not has_surrogate({"k": ["fine é \U0001f600"]})
