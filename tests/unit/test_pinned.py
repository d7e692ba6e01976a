"""Pinned revisions: the spec carries (file id, sha256) and the code store serves exactly that
revision, cached by its immutable id (no metadata lookup once cached)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from faas_sandbox.colonies.spec import parse_process
from faas_sandbox.errors import ColoniesRefused, FunctionNotFound, SpecError
from tests.unit.test_codestore import world  # noqa: F401  (fixture)

SHA = "a" * 64


def process(**kwargs: Any) -> dict[str, Any]:
    return {"processid": "p", "spec": {"funcname": "execute", "kwargs": kwargs}}


def test_spec_carries_the_pin_in_both_forms() -> None:
    call = parse_process(process(function="f", args="[1]", revision="file1", sha256=SHA))
    assert call.revision == ("file1", SHA)
    assert parse_process(process(function="f", arg="2", revision="x", sha256=SHA)).revision == (
        "x",
        SHA,
    )
    assert parse_process(process(function="f")).revision is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"revision": "file1"},
        {"sha256": SHA},
        {"revision": "../x", "sha256": SHA},
        {"revision": "f", "sha256": "zz"},
        {"revision": 3, "sha256": SHA},
    ],
)
def test_a_half_or_malformed_pin_is_a_spec_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_process(process(function="f", **kwargs))


class ById:
    """FakeFiles plus getfilemsg by file id (what the code store asks for a pinned call)."""

    def __init__(self, files: Any) -> None:
        self.files = files
        self.by_id: dict[str, dict[str, Any]] = {}
        self.rpcs = 0

    def rpc(self, msgtype: str, **fields: Any) -> Any:
        self.rpcs += 1
        meta = self.by_id.get(fields["fileid"])
        if meta is None:
            raise ColoniesRefused("Failed to get file", 404)
        return [meta]


def test_code_store_serves_exactly_the_pinned_revision(world: Any) -> None:  # noqa: F811
    store, files, _s3, _clock, _ = world
    ids = ById(files)
    files.rpc = ids.rpc
    old = files.deploy("f", b"def f():\n    return 1\n")
    ids.by_id[old] = dict(files.files["f"])
    new = files.deploy("f", b"def f():\n    return 2\n")
    ids.by_id[new] = dict(files.files["f"])
    old_sha = hashlib.sha256(b"def f():\n    return 1\n").hexdigest()
    code = store.get_revision("f", old, old_sha)
    assert "return 1" in code.source and code.fileid == old
    assert store.get_revision("f", old, old_sha).source == code.source
    assert ids.rpcs == 1  # cached by the immutable id
    with pytest.raises(FunctionNotFound):
        store.get_revision("f", new, old_sha)  # the pin's sha256 is not that revision's
    with pytest.raises(FunctionNotFound):
        store.get_revision("g", old, old_sha)  # not a revision of g
    with pytest.raises(FunctionNotFound):
        store.get_revision("f", "gone", old_sha)


@pytest.mark.parametrize(("wall", "expected"), [("1.0", 1.0), (2.5, 2.5), ("0.001", 0.001)])
def test_spec_carries_the_submitters_exact_wall_limit(wall: Any, expected: float) -> None:
    assert parse_process(process(function="f", arg="1", wall=wall)).wall == expected
    assert parse_process(process(function="f")).wall is None


@pytest.mark.parametrize("wall", ["nan", "inf", "0", "-1", "1e9", True, [1], "x" * 40])
def test_a_bad_wall_limit_is_a_spec_error(wall: Any) -> None:
    with pytest.raises(SpecError):
        parse_process(process(function="f", wall=wall))
