"""The identifier rules (names.py): each defined once, used by every boundary."""

from __future__ import annotations

import pytest

from faas_sandbox.errors import SpecError
from faas_sandbox.names import (
    FUNCTION_NAME_PATTERN,
    KEYWORD_PATTERN,
    PROCESSID_PATTERN,
    function_name,
    is_sha256,
    keyword_name,
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


KEYWORD_NAMES = ["x", "_private", "factor2", "A" * 300]
# Not keyword argument names: non-ASCII identifiers too (the ligature U+FB01 is one, and Python
# would fold it to "fi" in a def), as well as what no Python name can be.
NOT_KEYWORD_NAMES = ["\u00fcn\u00efcode", "\ufb01", "a-b", "", "1a", "a b", "x\n", 7, None, b"x"]


@pytest.mark.parametrize("name", KEYWORD_NAMES)
def test_plain_ascii_identifiers_of_any_length_are_keyword_names(name):
    assert keyword_name(name) == name


@pytest.mark.parametrize("name", NOT_KEYWORD_NAMES)
def test_other_keyword_names_are_refused_with_the_rule_in_the_message(name):
    with pytest.raises(SpecError) as refused:
        keyword_name(name)
    assert str(refused.value) == (
        f"keyword argument name {repr(name)[:90]} is not an identifier "
        f"([A-Za-z_][A-Za-z0-9_]*, ASCII)"
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
    kwargs = schema["components"]["schemas"]["CallBody"]["properties"]["kwargs"]
    assert kwargs["patternProperties"] == {KEYWORD_PATTERN: {}}
    assert kwargs["additionalProperties"] is False


def test_sha256_digests_are_64_hex_digits_in_either_case():
    assert is_sha256("ab" * 32) and is_sha256("AB" * 32)
    for bad in ["ab" * 31, "ab" * 32 + "\n", "g" * 64, None, 64]:
        assert not is_sha256(bad)
