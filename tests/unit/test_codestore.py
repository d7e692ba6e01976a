"""The /faas code cache against fake metadata and a fake S3: no server."""

from __future__ import annotations

import hashlib
import threading

import pytest

from faas_sandbox.colonies.spec import parse_process
from faas_sandbox.errors import (
    CodeUnavailable,
    ColoniesRefused,
    ColoniesUnreachable,
    FunctionNotFound,
    SpecError,
)
from faas_sandbox.executor.codestore import CodeStore
from faas_sandbox.settings import S3Settings

SRC = b"def convert(celsius):\n    return (celsius * 9/5) + 32\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeS3:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.deadlines: list[float] = []
        self.gets = 0
        self.down = False

    def fetch(self, key, *, deadline, max_bytes):  # S3Reader.fetch
        self.gets += 1
        self.deadlines.append(deadline)
        if self.down:
            raise CodeUnavailable("S3 127.0.0.1:9000: ConnectionRefusedError")
        if key not in self.objects:
            raise FunctionNotFound("its content is gone from S3")
        if len(self.objects[key]) > max_bytes:
            raise FunctionNotFound(f"it is over the {max_bytes}-byte limit")
        return self.objects[key]


class FakeFiles:
    """Latest-revision metadata per name, like getfilemsg with latest=true."""

    colony = "dev"

    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3
        self.files: dict[str, dict] = {}
        self.lookups = 0
        self.down = False
        self.revision = 0

    def deploy(self, name: str, data: bytes, checksum: str | None = None) -> str:
        self.revision += 1
        fileid, obj = f"file{self.revision}", f"obj{self.revision}"
        self.s3.objects[obj] = data
        self.files[name] = {
            "fileid": fileid,
            "name": name,
            "label": "/faas",
            "size": len(data),
            "checksum": checksum or hashlib.sha256(data).hexdigest(),
            "checksumalg": "SHA256",
            "ref": {
                "protocol": "s3",
                "s3object": {
                    "server": "127.0.0.1",
                    "port": 9000,
                    "tls": False,
                    "region": "",
                    "bucket": "faas",
                    "object": obj,
                },
            },
        }
        return fileid

    def get_file(self, label, name):
        self.lookups += 1
        if self.down:
            raise ColoniesUnreachable("connection refused")
        if name not in self.files:
            raise ColoniesRefused("Failed to get file", 404)
        return [self.files[name]]

    def add_file(self, file):
        return {**file, "fileid": "new"}


@pytest.fixture
def world():
    s3 = FakeS3()
    files = FakeFiles(s3)
    clock = FakeClock()
    store = CodeStore(
        files,
        S3Settings(endpoint="127.0.0.1:9000", bucket="faas"),
        clock=clock,
        reader=s3,
        max_bytes=1000,
    )
    return store, files, s3, clock, None


def test_code_is_fetched_once_and_served_from_cache_within_the_recheck_delay(world):
    store, files, s3, clock, _ = world
    files.deploy("convert", SRC)
    for _ in range(50):
        code = store.get("convert")
        clock.advance(0.01)
    assert code.source == SRC.decode()
    assert (files.lookups, s3.gets) == (1, 1)
    assert s3.deadlines == [100.0 + 10.0]  # no deadline given: FETCH_S from now


def test_same_revision_rechecks_metadata_but_does_not_download_again(world):
    store, files, s3, clock, _ = world
    files.deploy("convert", SRC)
    store.get("convert")
    clock.advance(2.1)
    store.get("convert")
    assert (files.lookups, s3.gets) == (2, 1)


def test_new_revision_is_picked_up_after_the_recheck_delay(world):
    store, files, _s3, clock, _ = world
    files.deploy("convert", SRC)
    first = store.get("convert")
    new = files.deploy("convert", b"def convert(c):\n    return c\n")
    clock.advance(1.0)
    assert store.get("convert").fileid == first.fileid  # still within 2 s
    clock.advance(1.1)
    code = store.get("convert")
    assert code.fileid == new
    assert "return c\n" in code.source


def test_unknown_function_is_not_found_and_remembered_briefly(world):
    store, files, _, clock, _ = world
    for _ in range(3):
        with pytest.raises(FunctionNotFound, match="no function 'nope'"):
            store.get("nope")
    assert files.lookups == 1
    files.deploy("nope", SRC)
    clock.advance(2.1)
    assert store.get("nope").source == SRC.decode()


@pytest.mark.parametrize("name", ["../x", "a/b", "x.y", "", "ab cd"])
def test_bad_names_are_refused_at_the_intake_before_any_lookup(world, name):
    """The store takes checked names (FunctionName) and trusts them; the executor's intake
    (the spec decode) is where a name is checked, once, before it can reach the store."""
    store, files, s3, _, _ = world
    process = {
        "processid": "p",
        "spec": {"funcname": "execute", "kwargs": {"function": name, "arg": "1"}},
    }
    with pytest.raises(SpecError, match="invalid function name"):
        store.get(parse_process(process).function)
    assert (files.lookups, s3.gets) == (0, 0)


def test_cached_code_is_served_while_colonies_is_down(world, caplog):
    store, files, _, clock, _ = world
    files.deploy("convert", SRC)
    store.get("convert")
    files.down = True
    clock.advance(3)
    assert store.get("convert").source == SRC.decode()
    clock.advance(1)
    assert store.get("convert").source == SRC.decode()
    assert files.lookups == 2  # re-checked once per delay, not on every call
    assert caplog.text.count("code store: ColonyFS failing") == 1
    files.down = False
    clock.advance(2.1)
    store.get("convert")
    assert caplog.text.count("code store: ColonyFS working again") == 1


def test_s3_down_affects_only_code_not_yet_cached(world, caplog):
    store, files, s3, clock, _ = world
    files.deploy("cached", SRC)
    files.deploy("fresh", SRC + b"# another revision\n")
    store.get("cached")
    s3.down = True
    clock.advance(2.1)
    for _ in range(2):
        assert store.get("cached").source == SRC.decode()  # metadata checks still work
        with pytest.raises(CodeUnavailable, match="'fresh' and it is not cached"):
            store.get("fresh")
    assert caplog.text.count("code store: S3 failing") == 1
    assert "working again" not in caplog.text


def test_not_cached_and_down_is_unavailable(world):
    store, files, s3, _, _ = world
    files.deploy("convert", SRC)
    s3.down = True
    with pytest.raises(CodeUnavailable, match="not cached"):
        store.get("convert")
    files.down = True
    with pytest.raises(CodeUnavailable, match="not cached"):
        store.get("convert")


def test_checksum_mismatch_is_unavailable(world):
    store, files, _, _, _ = world
    files.deploy("convert", SRC, checksum="0" * 64)
    with pytest.raises(CodeUnavailable, match="checksum"):
        store.get("convert")


def test_oversized_or_non_utf8_code_is_refused(world):
    store, files, s3, _, _ = world
    files.deploy("big", b"#" * 1001)
    with pytest.raises(FunctionNotFound, match="1001 bytes, over the 1000-byte"):
        store.get("big")
    files.deploy("latin", b"def latin():\n    return '\xe9'\n")
    with pytest.raises(FunctionNotFound, match="not UTF-8"):
        store.get("latin")
    gets = s3.gets
    with pytest.raises(FunctionNotFound):
        store.get("latin")
    assert s3.gets == gets  # the verdict is cached too


def test_empty_file_is_not_found_with_that_reason(world):
    store, files, _, _, _ = world
    for name, data in (("empty", b""), ("blank", b"\n  \n")):
        files.deploy(name, data)
        with pytest.raises(FunctionNotFound, match=f"/faas/{name} is empty"):
            store.get(name)


def test_names_remembered_are_bounded(world, monkeypatch):
    """Callers choose the names: unknown ones must not grow the executor's memory forever."""
    import faas_sandbox.executor.codestore as codestore

    monkeypatch.setattr(codestore, "_MAX_ENTRIES", 8)
    store, files, _, _, _ = world
    files.deploy("convert", SRC)
    store.get("convert")
    for i in range(50):
        with pytest.raises(FunctionNotFound):
            store.get(f"nothing_{i}")
    assert len(store._entries) == 8 and len(store._locks) <= 8
    assert "nothing_49" in store._entries and "convert" not in store._entries
    assert store.get("convert").source == SRC.decode()  # fetched again, still correct


def test_object_missing_from_s3_is_not_found(world):
    store, files, s3, _, _ = world
    files.deploy("convert", SRC)
    s3.objects.clear()
    with pytest.raises(FunctionNotFound, match="gone from S3"):
        store.get("convert")


def test_concurrent_first_calls_fetch_once(world):
    store, files, s3, _, _ = world
    files.deploy("convert", SRC)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.get("convert").source))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [SRC.decode()] * 8
    assert s3.gets == 1


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"server": "evil.example"}, "names the store 'http://evil.example:9000/faas'"),
        ({"port": 9001}, "names the store"),
        ({"bucket": "other"}, "names the store 'http://127.0.0.1:9000/other'"),
        ({"tls": True}, "names the store 'https://"),
        ({"object": ""}, "no valid object key"),
    ],
)
def test_metadata_naming_another_store_is_refused_without_contacting_it(world, change, reason):
    store, files, s3, _, _ = world
    files.deploy("convert", SRC)
    files.files["convert"]["ref"]["s3object"].update(change)
    with pytest.raises(FunctionNotFound, match=reason):
        store.get("convert")
    assert s3.gets == 0


@pytest.mark.parametrize(
    "meta", [{"checksum": ""}, {"checksum": "abc"}, {"checksumalg": "MD5"}, {"checksum": None}]
)
def test_metadata_without_a_sha256_checksum_is_refused(world, meta):
    store, files, s3, _, _ = world
    files.deploy("convert", SRC)
    files.files["convert"].update(meta)
    with pytest.raises(FunctionNotFound, match="no SHA-256 checksum"):
        store.get("convert")
    assert s3.gets == 0


def test_checksum_failure_never_quotes_the_content(world):
    store, files, _s3, _, _ = world
    files.deploy("convert", b"STOLEN-SECRET-\xff", checksum="1" * 64)
    with pytest.raises(CodeUnavailable) as info:
        store.get("convert")
    assert "STOLEN" not in str(info.value) and "checksum" in str(info.value)


def test_no_configured_store_refuses_every_function():
    s3 = FakeS3()
    files = FakeFiles(s3)
    files.deploy("convert", SRC)
    store = CodeStore(files, S3Settings(), reader=s3)
    with pytest.raises(FunctionNotFound, match="no code store configured"):
        store.get("convert")


def test_a_caller_waiting_for_another_fetch_gives_up_at_its_own_deadline(world):
    store, files, _s3, clock, _ = world
    files.deploy("convert", SRC)
    lock = store._locks.setdefault("convert", threading.Lock())
    lock.acquire()  # another call's fetch in progress (a slow store)
    try:
        with pytest.raises(CodeUnavailable, match="still being fetched"):
            store.get("convert", deadline=clock.now + 0.05)
    finally:
        lock.release()
    assert store.get("convert").source == SRC.decode()


def test_a_pinned_revision_naming_another_store_is_refused_too(world):
    store, files, s3, _, _ = world
    fileid = files.deploy("convert", SRC)
    meta = files.files["convert"]
    meta["ref"]["s3object"]["server"] = "evil.example"
    files.rpc = lambda msgtype, **fields: [meta] if fields.get("fileid") == fileid else []
    with pytest.raises(FunctionNotFound, match=r"names the store 'http://evil\.example"):
        store.get_revision("convert", fileid, meta["checksum"])
    assert s3.gets == 0
