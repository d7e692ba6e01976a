"""Which ColonyFS metadata of a ``/faas`` function we trust: the one rule for reading and writing.

ColonyFS metadata is untrusted (any member can write it with ``addfilemsg``, no S3 credentials
needed), so before anything is fetched or deleted it must name exactly the store the operator
configured (``AWS_S3_ENDPOINT`` server and port, ``AWS_S3_TLS``, ``AWS_S3_BUCKET``), a
non-empty object key of at most 1024 characters and a SHA-256 checksum. Anything else is
:class:`FunctionNotFound` with the reason, decided without contacting anything.

Used by :mod:`.codestore` (reading a function's code) and :mod:`.publish` (deploying, removing).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import CodeUnavailable, ColoniesRefused, FunctionNotFound, ReplyUnreadable
from ..names import is_sha256
from ..settings import S3Settings


class FileReader(Protocol):
    """The ColonyFS reads of :class:`~faas_sandbox.colonies.client.ColoniesClient` used here."""

    colony: str

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]: ...
    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any: ...


def latest(client: FileReader, s3: S3Settings, label: str, name: str) -> dict[str, Any] | None:
    """The latest metadata of ``label``/``name`` if it names our store; None if there is none.

    FunctionNotFound if it cannot be read or names anything else; CodeUnavailable if ColonyFS
    refuses the lookup; ColoniesUnreachable as the client raises it."""
    try:
        files = client.get_file(label, name)
    except ColoniesRefused as exc:
        if exc.status == 404:
            return None
        raise CodeUnavailable(f"ColonyFS refused the lookup: {exc}") from None
    except ReplyUnreadable as exc:
        raise FunctionNotFound(f"/faas/{name}: its metadata cannot be read ({exc})") from None
    if not files:
        return None
    meta = files[0]
    if not isinstance(meta, dict):
        raise FunctionNotFound(f"/faas/{name}: its metadata is not an object")
    check(s3, name, meta)
    return meta


def check(s3: S3Settings, name: str, meta: dict[str, Any]) -> None:
    """FunctionNotFound unless the metadata names the configured store and a SHA-256."""
    object_key(s3, name, meta)
    checksum, alg = meta.get("checksum"), meta.get("checksumalg")
    if (
        not isinstance(checksum, str)
        or not is_sha256(checksum)
        or str(alg or "SHA256").upper() != "SHA256"
    ):
        raise FunctionNotFound(
            f"/faas/{name}: its metadata carries no SHA-256 checksum, "
            f"so its content cannot be verified"
        )


def object_key(s3: S3Settings, name: str, meta: dict[str, Any]) -> str:
    """The S3 key the metadata names if it names the configured store; else FunctionNotFound
    saying why."""
    ref = meta.get("ref")
    obj = ref.get("s3object") if isinstance(ref, dict) else None
    if not isinstance(obj, dict):
        raise FunctionNotFound(f"/faas/{name}: its metadata has no S3 reference")
    if not s3.endpoint or not s3.bucket:
        raise FunctionNotFound(
            f"/faas/{name}: this executor has no code store configured "
            f"(AWS_S3_ENDPOINT and AWS_S3_BUCKET)"
        )
    named = f"{obj.get('server')}:{obj.get('port')}"
    if named != s3.endpoint or obj.get("bucket") != s3.bucket or bool(obj.get("tls")) != s3.tls:
        where = f"{'https' if obj.get('tls') else 'http'}://{named}/{obj.get('bucket')}"
        raise FunctionNotFound(
            f"/faas/{name}: its metadata names the store "
            f"{where[:160]!r}, not this executor's code store; refused "
            f"without contacting it"
        )
    key = obj.get("object")
    if not isinstance(key, str) or not 0 < len(key) <= 1024:
        raise FunctionNotFound(f"/faas/{name}: its metadata names no valid object key")
    return key
