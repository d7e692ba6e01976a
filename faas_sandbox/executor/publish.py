"""Writing function code to ColonyFS ``/faas``: deploy a revision, remove every revision.

Deploying (``faas-sandbox deploy``, ``functions rollback``): the object goes to
``AWS_S3_BUCKET`` under a random key and the metadata is ``addfilemsg`` exactly as pycolonies'
``upload_data(..., label="/faas")`` writes it, so the tutorial's executor and ``colonies fs``
tools read it too. Content identical to the latest usable revision is not uploaded again.

Removing (``faas-sandbox functions rm``) undoes what deploys wrote, revision by revision, oldest
first: the S3 object (``DeleteObject``), then the metadata (``removefilemsg`` by file id), as
pycolonies' ``delete_file`` orders it, so an interrupted removal leaves only whole revisions and
running it again finishes it (deleting a missing object is not an error in S3). An object whose
metadata names another store (or none) is kept and said so: that store is never contacted
(:mod:`.codemeta` decides).

Reading a function's code for a call is :mod:`.codestore`'s job.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ..colonies.lifecycle import LABEL, history, remove_revision
from ..errors import CodeUnavailable, FunctionNotFound
from ..names import FunctionName
from ..settings import S3Settings
from . import codemeta
from .s3fetch import S3Reader


class FileWriter(codemeta.FileReader, Protocol):
    """The ColonyFS calls of :class:`~faas_sandbox.colonies.client.ColoniesClient` used here."""

    def add_file(self, file: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(slots=True)
class Removal:
    """What :meth:`CodePublisher.remove` did."""

    revisions: int = 0  # metadata entries removed
    objects: int = 0  # S3 objects deleted from the configured store
    kept: list[str] = field(default_factory=list)  # objects left in place, each with the reason


class CodePublisher:
    """Deploys and removes /faas functions in the configured store (module docstring)."""

    def __init__(
        self, client: FileWriter, s3: S3Settings, *, label: str = LABEL, reader: Any = None
    ) -> None:
        self._client = client
        self._s3 = s3
        self.label = label
        self._reader = reader or S3Reader(s3)  # its boto3 client, for the configured endpoint

    def upload(self, name: FunctionName, data: bytes) -> tuple[dict[str, Any], bool]:
        """Store ``data`` as /faas/<name>; (metadata, False) if the latest is identical."""
        checksum = hashlib.sha256(data).hexdigest()
        try:
            latest = codemeta.latest(self._client, self._s3, self.label, name)
        except (CodeUnavailable, FunctionNotFound):  # unusable metadata: upload a good one
            latest = None
        if latest is not None and latest.get("checksum") == checksum:
            return latest, False
        self._s3.require_upload()
        server, port = self._s3.endpoint.split(":")
        s3 = self._reader.client
        obj_key = hashlib.sha256(str(uuid.uuid4()).encode()).hexdigest()
        try:
            try:
                s3.head_bucket(Bucket=self._s3.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                    raise
                s3.create_bucket(Bucket=self._s3.bucket)
            s3.put_object(Bucket=self._s3.bucket, Key=obj_key, Body=data)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise CodeUnavailable(f"S3 {self._s3.endpoint}: {exc}") from None
        meta = {
            "fileid": "",
            "colonyname": self._client.colony,
            "label": self.label,
            "name": name,
            "size": len(data),
            "sequencenr": 1,
            "checksum": checksum,
            "checksumalg": "SHA256",
            "ref": {
                "protocol": "s3",
                "s3object": {
                    "server": server,
                    "port": int(port),
                    "tls": self._s3.tls,
                    "accesskey": "",
                    "secretkey": "",
                    "region": self._s3.region,
                    "encryptionkey": "",
                    "encryptionalg": "",
                    "object": obj_key,
                    "bucket": self._s3.bucket,
                },
            },
        }
        return self._client.add_file(meta), True

    def remove(self, name: FunctionName) -> Removal:
        """Remove every revision of ``name`` there is now (module docstring, "Removing").

        ColoniesError from the server; CodeUnavailable when S3 fails, saying how far it got
        (what is left is still listed: run it again)."""
        done = Removal()
        for revision in history(self._client, name, self.label):
            try:
                key = codemeta.object_key(self._s3, name, revision.meta)
            except FunctionNotFound as exc:
                done.kept.append(f"revision {revision.number}: {exc}")
            else:
                try:
                    self._reader.client.delete_object(Bucket=self._s3.bucket, Key=key)
                except (BotoCoreError, ClientError, OSError) as exc:
                    raise CodeUnavailable(
                        f"S3 {self._s3.endpoint}: cannot delete revision {revision.number}'s "
                        f"object ({type(exc).__name__}); {done.revisions} revision(s) removed "
                        f"before it, the rest kept"
                    ) from None
                done.objects += 1
            remove_revision(self._client, revision.fileid)
            done.revisions += 1
        return done
