"""`CodePublisher.upload` (``deploy``, ``functions rollback``) against a fake ColonyFS and a fake
S3: what it writes is what pycolonies' ``upload_data`` writes and what the code store reads."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from faas_sandbox.errors import CodeUnavailable, ColoniesRefused
from faas_sandbox.executor import codemeta
from faas_sandbox.executor.publish import CodePublisher
from faas_sandbox.names import FunctionName, is_sha256
from faas_sandbox.settings import S3Settings

NAME = FunctionName("convert")
SRC = b"def convert(celsius):\n    return (celsius * 9/5) + 32\n"
S3 = S3Settings(
    endpoint="127.0.0.1:9000", bucket="faas", access_key="minio", secret_key="minio-secret"
)


class FakeBucket:
    """The boto3 client calls an upload makes; ``fail`` raises from put_object."""

    def __init__(self, exists: bool = True) -> None:
        self.exists = exists
        self.objects: dict[str, bytes] = {}
        self.calls: list[str] = []
        self.fail: Exception | None = None

    def head_bucket(self, *, Bucket: str) -> dict[str, Any]:  # noqa: N803 (boto3)
        self.calls.append(f"head_bucket {Bucket}")
        if not self.exists:
            raise ClientError({"Error": {"Code": "404"}}, "HeadBucket")
        return {}

    def create_bucket(self, *, Bucket: str) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"create_bucket {Bucket}")
        self.exists = True
        return {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> dict[str, Any]:  # noqa: N803
        self.calls.append(f"put_object {Bucket}")
        if self.fail is not None:
            raise self.fail
        self.objects[Key] = Body
        return {}


class FakeReader:
    def __init__(self, bucket: FakeBucket) -> None:
        self.client = bucket


class FakeColonyFS:
    """getfilemsg (latest) and addfilemsg, as the server answers them."""

    colony = "dev"

    def __init__(self) -> None:
        self.files: list[dict[str, Any]] = []

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]:
        found = [f for f in self.files if (f["label"], f["name"]) == (label, name)]
        if not found:
            raise ColoniesRefused("Failed to get file", 404)
        return [found[-1]]

    def add_file(self, file: dict[str, Any]) -> dict[str, Any]:
        added = {**file, "fileid": f"file{len(self.files) + 1}"}
        self.files.append(added)
        return added

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any:
        raise AssertionError(f"upload sends no {msgtype}")  # pragma: no cover


def publisher(bucket: FakeBucket) -> tuple[CodePublisher, FakeColonyFS]:
    files = FakeColonyFS()
    return CodePublisher(files, S3, reader=FakeReader(bucket)), files


def test_a_deploy_writes_the_object_then_pycolonies_metadata_the_code_store_accepts() -> None:
    bucket = FakeBucket()
    store, files = publisher(bucket)

    meta, changed = store.upload(NAME, SRC)

    assert changed and meta == files.files[0] and meta["fileid"] == "file1"
    (key,) = bucket.objects
    assert is_sha256(key) and bucket.objects[key] == SRC  # a fresh random key per upload
    assert bucket.calls == ["head_bucket faas", "put_object faas"]
    assert {k: meta[k] for k in ("colonyname", "label", "name", "size", "checksumalg")} == {
        "colonyname": "dev",
        "label": "/faas",
        "name": "convert",
        "size": len(SRC),
        "checksumalg": "SHA256",
    }
    assert meta["checksum"] == hashlib.sha256(SRC).hexdigest()
    obj = meta["ref"]["s3object"]
    assert (obj["server"], obj["port"], obj["tls"], obj["bucket"], obj["object"]) == (
        "127.0.0.1",
        9000,
        False,
        "faas",
        key,
    )
    assert (obj["accesskey"], obj["secretkey"]) == ("", "")  # credentials never in ColonyFS
    assert codemeta.object_key(S3, NAME, meta) == key
    codemeta.check(S3, NAME, meta)  # what the executor's code store reads


def test_the_same_content_again_is_not_uploaded() -> None:
    bucket = FakeBucket()
    store, files = publisher(bucket)
    first, _ = store.upload(NAME, SRC)
    bucket.calls.clear()

    assert store.upload(NAME, SRC) == (first, False)
    assert bucket.calls == [] and len(files.files) == 1


def test_the_same_content_named_in_another_store_is_uploaded_to_ours() -> None:
    bucket = FakeBucket()
    store, files = publisher(bucket)
    forged, _ = store.upload(NAME, SRC)
    forged["ref"]["s3object"]["server"] = "evil.example"  # unusable: the reader refuses it

    meta, changed = store.upload(NAME, SRC)

    assert changed and len(files.files) == 2 and len(bucket.objects) == 2
    codemeta.check(S3, NAME, meta)


def test_a_missing_bucket_is_created() -> None:
    bucket = FakeBucket(exists=False)
    store, _ = publisher(bucket)
    assert store.upload(NAME, SRC)[1]
    assert bucket.calls == ["head_bucket faas", "create_bucket faas", "put_object faas"]


def test_an_s3_failure_is_unavailable_and_writes_no_metadata() -> None:
    bucket = FakeBucket()
    bucket.fail = EndpointConnectionError(endpoint_url="http://127.0.0.1:9000")
    store, files = publisher(bucket)
    with pytest.raises(CodeUnavailable, match=r"S3 127\.0\.0\.1:9000"):
        store.upload(NAME, SRC)
    assert files.files == []
