"""`CodePublisher.remove` (``functions rm``) against a fake ColonyFS and a fake S3: no server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from faas_sandbox.errors import CodeUnavailable, ColoniesRefused
from faas_sandbox.executor.publish import CodePublisher
from faas_sandbox.names import FunctionName
from faas_sandbox.settings import S3Settings

NAME = FunctionName("convert")


class FakeBucket:
    """The boto3 client's ``delete_object``; ``before_delete`` runs first (failures, races)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.deleted: list[tuple[str, str]] = []
        self.before_delete: Callable[[str], None] = lambda key: None

    def delete_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:  # noqa: N803 (boto3)
        self.before_delete(Key)
        self.deleted.append((Bucket, Key))
        self.objects.pop(Key, None)  # S3: deleting a missing key is not an error
        return {}


class FakeReader:
    def __init__(self) -> None:
        self.client = FakeBucket()


class FakeColonyFS:
    """Every revision of every file, like the server's getfilemsg/removefilemsg."""

    colony = "dev"

    def __init__(self, bucket: FakeBucket) -> None:
        self.bucket = bucket
        self.files: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def deploy(self, name: str, data: bytes, **store: Any) -> dict[str, Any]:
        n = len(self.files) + 1
        obj = {"server": "127.0.0.1", "port": 9000, "tls": False, "bucket": "faas"}
        obj.update(store, object=f"obj{n}")
        self.bucket.objects[obj["object"]] = data
        meta = {
            "fileid": f"file{n}",
            "name": name,
            "label": "/faas",
            "sequencenr": n,
            "checksum": hashlib.sha256(data).hexdigest(),
            "ref": {"protocol": "s3", "s3object": obj},
        }
        self.files.append(meta)
        return meta

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any:
        self.calls.append((msgtype, fields))
        if msgtype == "getfilemsg":
            found = [
                f
                for f in self.files
                if (f["label"], f["name"]) == (fields["label"], fields["name"])
            ]
            if not found:
                raise ColoniesRefused("Failed to get file", 404)
            return found
        if msgtype == "removefilemsg":
            assert (fields["label"], fields["name"]) == ("", "")  # by id, never by name
            self.files = [f for f in self.files if f["fileid"] != fields["fileid"]]
            return {}
        raise AssertionError(msgtype)

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]:  # pragma: no cover
        raise AssertionError("not used by remove")

    def add_file(self, file: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise AssertionError("not used by remove")


@pytest.fixture
def world() -> tuple[CodePublisher, FakeColonyFS, FakeBucket]:
    reader = FakeReader()
    files = FakeColonyFS(reader.client)
    store = CodePublisher(
        files, S3Settings(endpoint="127.0.0.1:9000", bucket="faas"), reader=reader
    )
    return store, files, reader.client


def test_every_revisions_object_and_metadata_are_removed(world) -> None:
    store, files, bucket = world
    for n in range(3):
        files.deploy(NAME, f"def convert(c):\n    return {n}\n".encode())
    files.deploy("other", b"def other():\n    return 0\n")

    removal = store.remove(NAME)

    assert (removal.revisions, removal.objects, removal.kept) == (3, 3, [])
    assert bucket.deleted == [("faas", "obj1"), ("faas", "obj2"), ("faas", "obj3")]
    assert list(bucket.objects) == ["obj4"]
    assert [f["name"] for f in files.files] == ["other"]


def test_an_object_in_another_store_is_kept_and_never_contacted(world) -> None:
    store, files, bucket = world
    files.deploy(NAME, b"def convert(c):\n    return 1\n", server="evil.example")
    files.deploy(NAME, b"def convert(c):\n    return 2\n", bucket="other")
    files.deploy(NAME, b"def convert(c):\n    return 3\n")

    removal = store.remove(NAME)

    assert bucket.deleted == [("faas", "obj3")]  # our store's only
    assert (removal.revisions, removal.objects) == (3, 1)
    assert [note.split(":")[0] for note in removal.kept] == ["revision 1", "revision 2"]
    assert "http://evil.example:9000/faas" in removal.kept[0]
    assert files.files == []


def test_an_s3_failure_stops_with_whole_revisions_left_and_a_rerun_finishes(world) -> None:
    store, files, bucket = world
    for n in range(3):
        files.deploy(NAME, f"def convert(c):\n    return {n}\n".encode())

    def down_at_obj2(key: str) -> None:
        if key == "obj2":
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9000")

    bucket.before_delete = down_at_obj2
    with pytest.raises(CodeUnavailable, match=r"revision 2's object .* 1 revision\(s\) removed"):
        store.remove(NAME)
    # revision 1 is gone entirely; 2 and 3 are whole: metadata and object both still there
    assert [f["fileid"] for f in files.files] == ["file2", "file3"]
    assert sorted(bucket.objects) == ["obj2", "obj3"]

    bucket.before_delete = lambda key: None
    removal = store.remove(NAME)
    assert (removal.revisions, removal.objects) == (2, 2)
    assert files.files == [] and bucket.objects == {}


def test_a_deploy_landing_during_the_removal_survives_whole(world) -> None:
    store, files, bucket = world
    files.deploy(NAME, b"def convert(c):\n    return 1\n")
    late: list[dict[str, Any]] = []

    def deploy_meanwhile(key: str) -> None:
        if not late:
            late.append(files.deploy(NAME, b"def convert(c):\n    return 2\n"))

    bucket.before_delete = deploy_meanwhile
    assert store.remove(NAME).revisions == 1
    assert files.files == late  # its metadata ...
    assert list(bucket.objects) == [late[0]["ref"]["s3object"]["object"]]  # ... and its object
