"""Function code from ColonyFS, in the tutorial's layout: label ``/faas``, file name = function.

Reading (the executor's hot path):

- A function name must be a plain identifier; anything else (``../x``, ``a/b``) is refused
  before any lookup.
- Source is cached by (file id, checksum), at most 512 revisions. A function's metadata
  (``getfilemsg``, latest revision) is re-checked at most every ``recheck_s`` seconds (2 s by
  default), so a new deploy is served within about 2 s and most calls cost no metadata round
  trip. Unknown names are remembered for the same time, so bad callers cannot turn every call
  into a lookup; at most 4096 names are remembered (found or not), least recently checked
  dropped first, so they cannot grow the executor's memory either.
- Content comes from S3 with ONE long-lived boto3 client per endpoint, credentials from the
  settings (never from file metadata), and is checked against its SHA-256 checksum.
- When Colonies or S3 is down: a cached revision keeps being served (logged once per outage);
  with nothing cached, :class:`CodeUnavailable`.

Writing (``faas-sandbox deploy``): the object goes to ``AWS_S3_BUCKET`` under a random key and
the metadata is ``addfilemsg`` exactly as pycolonies' ``upload_data(..., label="/faas")`` writes
it, so the tutorial's executor and ``colonies fs`` tools read it too.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .errors import CodeUnavailable, ColoniesRefused, ColoniesUnreachable, FunctionNotFound
from .settings import S3Settings
from .spec import check_function_name

log = logging.getLogger(__name__)

LABEL = "/faas"
RECHECK_S = 2.0
_MAX_CACHED_SOURCES = 512
_MAX_ENTRIES = 4096  # function names remembered, found or not


class FileClient(Protocol):
    colony: str

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]: ...
    def add_file(self, file: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Code:
    """One revision of a function's source."""

    name: str
    source: str
    fileid: str
    checksum: str


@dataclass(slots=True)
class _Entry:
    code: Code | None  # None: known not to exist (or unusable: see missing)
    checked_at: float
    missing: str = ""


class CodeStore:
    """Cached reads and writes of /faas functions; thread-safe."""

    def __init__(self, client: FileClient, s3: S3Settings, *, max_bytes: int = 1 << 20,
                 recheck_s: float = RECHECK_S, clock: Callable[[], float] = time.monotonic,
                 label: str = LABEL, pool_size: int = 10,
                 s3_factory: Callable[[str, bool, str], Any] | None = None) -> None:
        self._client = client
        self._s3 = s3
        self.max_bytes = max_bytes
        self.recheck_s = recheck_s
        self._clock = clock
        self.label = label
        self._pool_size = pool_size
        self._s3_factory = s3_factory or self._boto3_client
        self._entries: dict[str, _Entry] = {}
        self._sources: dict[tuple[str, str], str] = {}
        self._pinned: dict[str, str] = {}  # file id -> function name, of pinned revisions
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._s3_clients: dict[tuple[str, str, bool], Any] = {}
        self._down: set[str] = set()  # "ColonyFS" and/or "S3" while they fail

    # -- reading --------------------------------------------------------------------------------
    def get(self, name: str) -> Code:
        """The function's current source; FunctionNotFound, or CodeUnavailable when down."""
        check_function_name(name)
        entry = self._entries.get(name)
        if entry is not None and self._clock() - entry.checked_at < self.recheck_s:
            return _found(name, entry)
        with self._lock:
            lock = self._locks.setdefault(name, threading.Lock())
        if entry is not None and entry.code is not None:
            if not lock.acquire(blocking=False):
                return entry.code  # another thread is refreshing it; the cached one will do
        else:
            lock.acquire()
        try:
            entry = self._entries.get(name)
            if entry is not None and self._clock() - entry.checked_at < self.recheck_s:
                return _found(name, entry)
            entry = self._refresh(name, entry)
            return _found(name, entry)
        finally:
            lock.release()

    def get_revision(self, name: str, fileid: str, checksum: str) -> Code:
        """Exactly revision ``fileid`` of ``name`` (a call pinned by its submitter).

        Cached by the immutable (file id, checksum), so a cached revision costs no lookup; on
        a miss one ``getfilemsg`` by id. FunctionNotFound if the id is not a revision of
        ``name`` or its checksum is not ``checksum``; CodeUnavailable when ColonyFS/S3 is down.
        """
        check_function_name(name)
        key = (fileid, checksum.lower())
        source = self._sources.get(key)
        if source is not None and self._pinned.get(fileid) == name:
            return Code(name, source, fileid, key[1])
        try:
            files = self._client.rpc("getfilemsg", colonyname=self._client.colony,  # type: ignore[attr-defined]
                                     fileid=fileid, label="", name="", latest=False)
        except ColoniesRefused as exc:
            if exc.status == 404:
                raise FunctionNotFound(f"revision {fileid[:16]} of {name!r} does not exist "
                                       f"(removed?)") from None
            raise CodeUnavailable(f"ColonyFS refused the lookup: {exc}") from None
        except ColoniesUnreachable as exc:
            raise CodeUnavailable(f"cannot fetch revision {fileid[:16]} of {name!r}: {exc}") \
                from None
        meta = files[0] if isinstance(files, list) and files else None
        if (not isinstance(meta, dict) or meta.get("name") != name
                or meta.get("label") != self.label):
            raise FunctionNotFound(f"{fileid[:16]} is not a revision of {self.label}/{name}")
        if str(meta.get("checksum", "")).lower() != key[1]:
            raise FunctionNotFound(f"revision {fileid[:16]} of {name!r} does not have the "
                                   f"pinned sha256")
        if not isinstance(meta.get("ref"), dict) or not isinstance(meta["ref"].get("s3object"),
                                                                   dict):
            raise CodeUnavailable(f"ColonyFS metadata of {name!r} has no S3 reference")
        source = self._download(name, meta)
        with self._lock:
            if len(self._sources) >= _MAX_CACHED_SOURCES:
                self._sources.pop(next(iter(self._sources)))
            self._sources[key] = source
            if len(self._pinned) >= _MAX_CACHED_SOURCES:
                self._pinned.pop(next(iter(self._pinned)))
            self._pinned[fileid] = name
        return Code(name, source, fileid, key[1])

    def _refresh(self, name: str, old: _Entry | None) -> _Entry:
        now = self._clock()
        try:
            meta = self._latest(name)
        except (ColoniesUnreachable, CodeUnavailable) as exc:
            self._mark("ColonyFS", exc)
            return self._stale(name, old, now, exc)
        self._mark("ColonyFS")
        if meta is None:
            entry = _Entry(None, now, f"no function {name!r} in ColonyFS {self.label} "
                                      f"(deploy it with `faas-sandbox deploy`)")
        else:
            key = (str(meta.get("fileid", "")), str(meta.get("checksum", "")))
            source = self._sources.get(key)
            if source is None:
                try:
                    source = self._download(name, meta)
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
            log.warning("code store: %s failing (%s); serving cached code where there is some",
                        part, exc)
        elif exc is None and part in self._down:
            self._down.discard(part)
            log.warning("code store: %s working again", part)

    def _stale(self, name: str, old: _Entry | None, now: float, exc: Exception) -> _Entry:
        if old is None or old.code is None:
            raise CodeUnavailable(f"cannot fetch function {name!r} and it is not cached: "
                                  f"{exc}") from None
        entry = _Entry(old.code, now)  # do not retry on every call
        self._remember(name, entry)
        return entry

    def _latest(self, name: str) -> dict[str, Any] | None:
        try:
            files = self._client.get_file(self.label, name)
        except ColoniesRefused as exc:
            if exc.status == 404:
                return None
            raise CodeUnavailable(f"ColonyFS refused the lookup: {exc}") from None
        if not files:
            return None
        meta = files[0]
        ref = meta.get("ref") if isinstance(meta, dict) else None
        if not isinstance(ref, dict) or not isinstance(ref.get("s3object"), dict):
            raise CodeUnavailable(f"ColonyFS metadata of {name!r} has no S3 reference")
        return meta

    def _download(self, name: str, meta: dict[str, Any]) -> str:
        obj = meta["ref"]["s3object"]
        size = meta.get("size")
        if isinstance(size, int) and size > self.max_bytes:
            raise FunctionNotFound(f"/faas/{name} is {size} bytes, over the "
                                   f"{self.max_bytes}-byte source limit")
        endpoint = f"{obj.get('server', '')}:{obj.get('port', '')}"
        try:
            s3 = self._s3_client(endpoint, bool(obj.get("tls")), str(obj.get("region") or ""))
            body = s3.get_object(Bucket=obj.get("bucket", ""), Key=obj.get("object", ""))["Body"]
            try:
                data = body.read(self.max_bytes + 1)
            finally:
                body.close()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                raise FunctionNotFound(f"/faas/{name}: its content is gone from S3") from None
            raise CodeUnavailable(f"S3: {code or exc}") from None
        except (BotoCoreError, OSError, ValueError) as exc:
            raise CodeUnavailable(f"S3 {endpoint}: {exc}") from None
        if len(data) > self.max_bytes:
            raise FunctionNotFound(f"/faas/{name} is over the {self.max_bytes}-byte source limit")
        if not data.strip():
            raise FunctionNotFound(f"/faas/{name} is empty")
        checksum = str(meta.get("checksum", ""))
        if checksum and hashlib.sha256(data).hexdigest() != checksum.lower():
            raise CodeUnavailable(f"/faas/{name}: content does not match its checksum")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FunctionNotFound(f"/faas/{name} is not UTF-8 text") from None

    def _s3_client(self, endpoint: str, tls: bool, region: str) -> Any:
        key = (endpoint, region, tls)
        client = self._s3_clients.get(key)
        if client is None:
            with self._lock:  # creating boto3 clients is not thread-safe; using them is
                client = self._s3_clients.get(key)
                if client is None:
                    client = self._s3_factory(endpoint, tls, region)
                    self._s3_clients[key] = client
        return client

    def _boto3_client(self, endpoint: str, tls: bool, region: str) -> Any:
        return boto3.session.Session().client(
            "s3", endpoint_url=f"http{'s' if tls else ''}://{endpoint}",
            aws_access_key_id=self._s3.access_key or None,
            aws_secret_access_key=self._s3.secret_key or None,
            region_name=region or None, use_ssl=tls, verify=not self._s3.skip_verify,
            config=Config(connect_timeout=2, read_timeout=10,
                          retries={"max_attempts": 2, "mode": "standard"},
                          max_pool_connections=self._pool_size))

    # -- writing --------------------------------------------------------------------------------
    def upload(self, name: str, data: bytes) -> tuple[dict[str, Any], bool]:
        """Store ``data`` as /faas/<name>; (metadata, False) if the latest is identical."""
        check_function_name(name)
        checksum = hashlib.sha256(data).hexdigest()
        try:
            latest = self._latest(name)
        except CodeUnavailable:
            latest = None
        if latest is not None and latest.get("checksum") == checksum:
            return latest, False
        self._s3.require_upload()
        server, port = self._s3.endpoint.split(":")
        s3 = self._s3_client(self._s3.endpoint, self._s3.tls, self._s3.region)
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
            "fileid": "", "colonyname": self._client.colony, "label": self.label,
            "name": name, "size": len(data), "sequencenr": 1, "checksum": checksum,
            "checksumalg": "SHA256",
            "ref": {"protocol": "s3", "s3object": {
                "server": server, "port": int(port), "tls": self._s3.tls, "accesskey": "",
                "secretkey": "", "region": self._s3.region, "encryptionkey": "",
                "encryptionalg": "", "object": obj_key, "bucket": self._s3.bucket}},
        }
        with self._lock:
            self._entries.pop(name, None)
        return self._client.add_file(meta), True


def _found(name: str, entry: _Entry) -> Code:
    if entry.code is None:
        raise FunctionNotFound(entry.missing)
    return entry.code
