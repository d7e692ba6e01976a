"""Function code from ColonyFS, in the tutorial's layout: label ``/faas``, file name = function.

Reading (the executor's hot path):

- A function name arrives checked (:data:`~faas_sandbox.names.FunctionName`: a plain
  identifier, checked where it entered: the spec decode, the CLI), so it is used as it is.
- Source is cached by (file id, checksum), at most 512 revisions. A function's metadata
  (``getfilemsg``, latest revision) is re-checked at most every ``recheck_s`` seconds (2 s by
  default), so a new deploy is served within about 2 s and most calls cost no metadata round
  trip. Unknown names are remembered for the same time, so bad callers cannot turn every call
  into a lookup; at most 4096 names are remembered (found or not), least recently checked
  dropped first, so they cannot grow the executor's memory either.
- Content comes only from the store the operator configured (``AWS_S3_ENDPOINT`` +
  ``AWS_S3_BUCKET``), through one :class:`~faas_sandbox.executor.s3fetch.S3Reader`, with credentials
  from the settings. Metadata naming any other server, port, TLS mode or bucket, or carrying no
  SHA-256 checksum, is refused (``not_found`` with the reason) without contacting anything;
  the content must match the checksum, and an error never quotes bytes of a file that failed.
- A fetch is bounded by the call's deadline (connect, each read, the whole body) and by the
  source size limit; a call waiting for another call's fetch of the same function waits at
  most until its own deadline. Past it: ``unavailable``.
- When Colonies or S3 is down: a cached revision keeps being served (logged once per outage);
  with nothing cached, :class:`CodeUnavailable`.

Writing (``faas-sandbox deploy``): the object goes to ``AWS_S3_BUCKET`` under a random key and
the metadata is ``addfilemsg`` exactly as pycolonies' ``upload_data(..., label="/faas")`` writes
it, so the tutorial's executor and ``colonies fs`` tools read it too.

Removing (``faas-sandbox functions rm``) undoes what deploys wrote, revision by revision, oldest
first: the S3 object (``DeleteObject``), then the metadata (``removefilemsg`` by file id), as
pycolonies' ``delete_file`` orders it, so an interrupted removal leaves only whole revisions and
running it again finishes it (deleting a missing object is not an error in S3). An object whose
metadata names another store (or none) is kept and said so: that store is never contacted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from ..colonies.lifecycle import LABEL, history, remove_revision
from ..errors import (
    CodeUnavailable,
    ColoniesRefused,
    ColoniesUnreachable,
    FunctionNotFound,
    ReplyUnreadable,
)
from ..names import FunctionName, is_sha256
from ..settings import S3Settings
from .s3fetch import S3Reader
from .texts import for_log

log = logging.getLogger(__name__)

RECHECK_S = 2.0
_MAX_CACHED_SOURCES = 512
_MAX_ENTRIES = 4096  # function names remembered, found or not
FETCH_S = 10.0  # deadline of a fetch whose caller gave none


class FileClient(Protocol):
    colony: str

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]: ...
    def add_file(self, file: dict[str, Any]) -> dict[str, Any]: ...
    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Code:
    """One revision of a function's source."""

    name: FunctionName
    source: str
    fileid: str
    checksum: str


@dataclass(slots=True)
class Removal:
    """What :meth:`CodeStore.remove` did."""

    revisions: int = 0  # metadata entries removed
    objects: int = 0  # S3 objects deleted from the configured store
    kept: list[str] = field(default_factory=list)  # objects left in place, each with the reason


@dataclass(slots=True)
class _Entry:
    code: Code | None  # None: known not to exist (or unusable: see missing)
    checked_at: float
    missing: str = ""


class CodeStore:
    """Cached reads and writes of /faas functions; thread-safe."""

    def __init__(
        self,
        client: FileClient,
        s3: S3Settings,
        *,
        max_bytes: int = 1 << 20,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
        label: str = LABEL,
        pool_size: int = 10,
        reader: Any = None,
    ) -> None:
        self._client = client
        self._s3 = s3
        self.max_bytes = max_bytes
        self.recheck_s = recheck_s
        self._clock = clock
        self.label = label
        self._reader = reader or S3Reader(s3, pool_size=pool_size, clock=clock)
        self._entries: dict[str, _Entry] = {}
        self._sources: dict[tuple[str, str], str] = {}
        self._pinned: dict[str, str] = {}  # file id -> function name, of pinned revisions
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._down: set[str] = set()  # "ColonyFS" and/or "S3" while they fail

    # -- reading --------------------------------------------------------------------------------
    def get(self, name: FunctionName, deadline: float | None = None) -> Code:
        """The function's current source; FunctionNotFound, or CodeUnavailable when down or
        not fetched by ``deadline`` (a ``clock`` time; default: FETCH_S from now)."""
        if deadline is None:
            deadline = self._clock() + FETCH_S
        entry = self._entries.get(name)
        if entry is not None and self._clock() - entry.checked_at < self.recheck_s:
            return _found(name, entry)
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        if entry is not None and entry.code is not None:
            if not lock.acquire(blocking=False):
                return entry.code  # another thread is refreshing it; the cached one will do
        elif not lock.acquire(timeout=max(0.0, deadline - self._clock())):
            raise CodeUnavailable(
                f"function {name!r} is still being fetched for another call at this call's deadline"
            )
        try:
            entry = self._entries.get(name)
            if entry is not None and self._clock() - entry.checked_at < self.recheck_s:
                return _found(name, entry)
            entry = self._refresh(name, entry, deadline)
            return _found(name, entry)
        finally:
            lock.release()

    def get_revision(
        self, name: FunctionName, fileid: str, checksum: str, deadline: float | None = None
    ) -> Code:
        """Exactly revision ``fileid`` of ``name`` (a call pinned by its submitter).

        Cached by the immutable (file id, checksum), so a cached revision costs no lookup; on
        a miss one ``getfilemsg`` by id. FunctionNotFound if the id is not a revision of
        ``name`` or its checksum is not ``checksum``; CodeUnavailable when ColonyFS/S3 is down.
        """
        key = (fileid, checksum.lower())
        source = self._sources.get(key)
        if source is not None and self._pinned.get(fileid) == name:
            return Code(name, source, fileid, key[1])
        try:
            files = self._client.rpc(
                "getfilemsg",
                colonyname=self._client.colony,
                fileid=fileid,
                label="",
                name="",
                latest=False,
            )
        except ColoniesRefused as exc:
            if exc.status == 404:
                raise FunctionNotFound(
                    f"revision {fileid[:16]} of {name!r} does not exist (removed?)"
                ) from None
            raise CodeUnavailable(f"ColonyFS refused the lookup: {exc}") from None
        except ColoniesUnreachable as exc:
            raise CodeUnavailable(
                f"cannot fetch revision {fileid[:16]} of {name!r}: {exc}"
            ) from None
        except ReplyUnreadable as exc:
            raise FunctionNotFound(
                f"revision {fileid[:16]} of {name!r}: its metadata cannot be read ({exc})"
            ) from None
        meta = files[0] if isinstance(files, list) and files else None
        if (
            not isinstance(meta, dict)
            or meta.get("name") != name
            or meta.get("label") != self.label
        ):
            raise FunctionNotFound(f"{fileid[:16]} is not a revision of {self.label}/{name}")
        if str(meta.get("checksum", "")).lower() != key[1]:
            raise FunctionNotFound(
                f"revision {fileid[:16]} of {name!r} does not have the pinned sha256"
            )
        self._check_meta(name, meta)  # our store only, a SHA-256 present
        if deadline is None:
            deadline = self._clock() + FETCH_S
        source = self._download(name, meta, deadline)
        with self._lock:
            if len(self._sources) >= _MAX_CACHED_SOURCES:
                self._sources.pop(next(iter(self._sources)))
            self._sources[key] = source
            if len(self._pinned) >= _MAX_CACHED_SOURCES:
                self._pinned.pop(next(iter(self._pinned)))
            self._pinned[fileid] = name
        return Code(name, source, fileid, key[1])

    def _refresh(self, name: FunctionName, old: _Entry | None, deadline: float) -> _Entry:
        now = self._clock()
        try:
            meta = self._latest(name)
        except FunctionNotFound as exc:
            self._remember(name, _Entry(None, now, str(exc)))
            raise
        except (ColoniesUnreachable, CodeUnavailable) as exc:
            self._mark("ColonyFS", exc)
            return self._stale(name, old, now, exc)
        self._mark("ColonyFS")
        if meta is None:
            entry = _Entry(
                None,
                now,
                f"no function {name!r} in ColonyFS {self.label} "
                f"(deploy it with `faas-sandbox deploy`)",
            )
        else:
            key = (str(meta.get("fileid", "")), str(meta.get("checksum", "")))
            source = self._sources.get(key)
            if source is None:
                try:
                    source = self._download(name, meta, deadline)
                except CodeUnavailable as exc:
                    self._mark("S3", exc)
                    return self._stale(name, old, now, exc)
                except FunctionNotFound as exc:
                    self._remember(name, _Entry(None, now, str(exc)))
                    raise
                self._mark("S3")
                with self._lock:
                    if len(self._sources) >= _MAX_CACHED_SOURCES:
                        self._sources.pop(next(iter(self._sources)))
                    self._sources[key] = source
                if old is not None and old.code is not None:
                    log.info("function %s: new revision %s", name, key[0][:12])
            entry = _Entry(Code(name, source, key[0], key[1]), now)
        self._remember(name, entry)
        return entry

    def _remember(self, name: str, entry: _Entry) -> None:
        """Keep at most ``_MAX_ENTRIES`` names (found or not), dropping the least recently
        refreshed: callers choose the names, so they must not be able to grow this forever."""
        with self._lock:
            self._entries.pop(name, None)
            self._entries[name] = entry
            while len(self._entries) > _MAX_ENTRIES:
                old = next(iter(self._entries))
                del self._entries[old]
                lock = self._locks.get(old)
                if lock is not None and not lock.locked():
                    del self._locks[old]

    def _mark(self, part: str, exc: Exception | None = None) -> None:
        """One log line when ColonyFS metadata or S3 content starts or stops failing."""
        if exc is not None and part not in self._down:
            self._down.add(part)
            log.warning(
                "code store: %s failing (%s); serving cached code where there is some",
                part,
                for_log(exc),
            )
        elif exc is None and part in self._down:
            self._down.discard(part)
            log.warning("code store: %s working again", part)

    def _stale(self, name: str, old: _Entry | None, now: float, exc: Exception) -> _Entry:
        if old is None or old.code is None:
            raise CodeUnavailable(
                f"cannot fetch function {name!r} and it is not cached: {exc}"
            ) from None
        entry = _Entry(old.code, now)  # do not retry on every call
        self._remember(name, entry)
        return entry

    def _latest(self, name: str) -> dict[str, Any] | None:
        """The latest metadata of ``name`` if it names our store; None if there is none."""
        try:
            files = self._client.get_file(self.label, name)
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
        self._check_meta(name, meta)
        return meta

    def _check_meta(self, name: str, meta: dict[str, Any]) -> None:
        """FunctionNotFound unless the metadata names the configured store and a SHA-256."""
        self._object_key(name, meta)
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

    def _object_key(self, name: str, meta: dict[str, Any]) -> str:
        """The S3 key the metadata names if it names the configured store; else
        FunctionNotFound saying why."""
        ref = meta.get("ref")
        obj = ref.get("s3object") if isinstance(ref, dict) else None
        if not isinstance(obj, dict):
            raise FunctionNotFound(f"/faas/{name}: its metadata has no S3 reference")
        s3 = self._s3
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

    def _download(self, name: str, meta: dict[str, Any], deadline: float) -> str:
        size = meta.get("size")
        if isinstance(size, int) and size > self.max_bytes:
            raise FunctionNotFound(
                f"/faas/{name} is {size} bytes, over the {self.max_bytes}-byte source limit"
            )
        try:
            data = self._reader.fetch(
                meta["ref"]["s3object"]["object"], deadline=deadline, max_bytes=self.max_bytes
            )
        except FunctionNotFound as exc:
            raise FunctionNotFound(f"/faas/{name}: {exc}") from None
        except (BotoCoreError, ClientError, ValueError) as exc:  # presigning (local)
            raise CodeUnavailable(f"S3: {type(exc).__name__}") from None
        if hashlib.sha256(data).hexdigest() != str(meta["checksum"]).lower():
            raise CodeUnavailable(f"/faas/{name}: content does not match its checksum")
        if not data.strip():
            raise FunctionNotFound(f"/faas/{name} is empty")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FunctionNotFound(f"/faas/{name} is not UTF-8 text") from None

    # -- writing --------------------------------------------------------------------------------
    def upload(self, name: FunctionName, data: bytes) -> tuple[dict[str, Any], bool]:
        """Store ``data`` as /faas/<name>; (metadata, False) if the latest is identical."""
        checksum = hashlib.sha256(data).hexdigest()
        try:
            latest = self._latest(name)
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
        with self._lock:
            self._entries.pop(name, None)
        return self._client.add_file(meta), True

    # -- removing -------------------------------------------------------------------------------
    def remove(self, name: FunctionName) -> Removal:
        """Remove every revision of ``name`` there is now (module docstring, "Removing").

        ColoniesError from the server; CodeUnavailable when S3 fails, saying how far it got
        (what is left is still listed: run it again)."""
        done = Removal()
        for revision in history(self._client, name, self.label):
            try:
                key = self._object_key(name, revision.meta)
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
        with self._lock:
            self._entries.pop(name, None)
        return done


def _found(name: FunctionName, entry: _Entry) -> Code:
    if entry.code is None:
        raise FunctionNotFound(entry.missing)
    return entry.code
