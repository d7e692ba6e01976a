"""The identifier rules (names.py): each defined once, used by every boundary."""

from __future__ import annotations

import pytest

from faas_sandbox.errors import SpecError
from faas_sandbox.names import (
    FUNCTION_NAME_PATTERN,
    PROCESSID_PATTERN,
    function_name,
    is_sha256,
    processid,
)


@pytest.mark.parametrize("name", ["convert", "_private", "f2", "A" * 128])
def test_plain_ascii_identifiers_up_to_128_characters_are_function_names(name):
    assert function_name(name) == name


# Not function names: paths, dots, empty, a leading digit, too long, spaces, a newline,
# non-ASCII, and values that are not text (also used by the spec decoder's tests).
NOT_FUNCTION_NAMES = [
    "../etc/passwd",
    "a/b",
    "a.b",
    "",
    "1abc",
    "x" * 129,
    "con vert",
    "convert\n",
    "ünïcode",
    7,
    None,
    b"convert",
]


@pytest.mark.parametrize("name", NOT_FUNCTION_NAMES)
def test_anything_else_is_refused_with_the_rule_in_the_message(name):
    with pytest.raises(SpecError) as refused:
        function_name(name)
    assert str(refused.value) == (
        f"invalid function name {repr(name)[:80]}: expected an "
        f"identifier ([A-Za-z_][A-Za-z0-9_]*, at most 128 "
        f"characters)"
    )


def test_processids_are_64_lowercase_hex_digits():
    assert processid("0123456789abcdef" * 4) == "0123456789abcdef" * 4
    for bad in ["A" * 64, "a" * 63, "a" * 65, "a" * 64 + "\n", "", "g" * 64, 64, None]:
        with pytest.raises(SpecError, match="expected 64 hex digits, got"):
            processid(bad)


def test_the_front_end_documents_and_applies_the_same_patterns():
    """FastAPI validates paths against names.py's patterns, so the OpenAPI schema shows them."""
    from faas_sandbox.frontend.app import create_app

    class NoBackend:
        def alive_executors(self) -> int:  # pragma: no cover - never called
            return 0

    schema = create_app(NoBackend()).openapi()  # type: ignore[arg-type]
    patterns = {
        param["name"]: param["schema"].get("pattern")
        for path in schema["paths"].values()
        for op in path.values()
        for param in op.get("parameters", [])
        if param["in"] == "path"
    }
    assert patterns == {"name": FUNCTION_NAME_PATTERN, "processid": PROCESSID_PATTERN}


def test_sha256_digests_are_64_hex_digits_in_either_case():
    assert is_sha256("ab" * 32) and is_sha256("AB" * 32)
    for bad in ["ab" * 31, "ab" * 32 + "\n", "g" * 64, None, 64]:
        assert not is_sha256(bad)
