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

Which metadata is trusted is :mod:`.codemeta`'s rule; deploying and removing functions is
:mod:`.publish`'s job.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ..colonies.lifecycle import LABEL
from ..errors import (
    CodeUnavailable,
    ColoniesRefused,
    ColoniesUnreachable,
    FunctionNotFound,
    ReplyUnreadable,
)
from ..names import FunctionName
from ..settings import S3Settings
from . import codemeta
from .s3fetch import S3Reader
from .texts import for_log

log = logging.getLogger(__name__)

RECHECK_S = 2.0
_MAX_CACHED_SOURCES = 512
_MAX_ENTRIES = 4096  # function names remembered, found or not
FETCH_S = 10.0  # deadline of a fetch whose caller gave none


@dataclass(frozen=True, slots=True)
class Code:
    """One revision of a function's source."""

    name: FunctionName
    source: str
    fileid: str
    checksum: str


@dataclass(slots=True)
class _Entry:
    code: Code | None  # None: known not to exist (or unusable: see missing)
    checked_at: float
    missing: str = ""


class CodeStore:
    """Cached reads of /faas functions for calls; thread-safe."""

    def __init__(
        self,
        client: codemeta.FileReader,
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
        codemeta.check(self._s3, name, meta)  # our store only, a SHA-256 present
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
            meta = codemeta.latest(self._client, self._s3, self.label, name)
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


def _found(name: FunctionName, entry: _Entry) -> Code:
    if entry.code is None:
        raise FunctionNotFound(entry.missing)
    return entry.code
