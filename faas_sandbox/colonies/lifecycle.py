"""A deployed function's revisions in ColonyFS ``/faas``: list, pin, remove.

Every ``deploy`` of a name adds a file version (``addfilemsg``); the server gives each a
fresh, immutable file id and a sequence number. Revision numbers here count a name's versions
from 1 (oldest) up; the current revision is the newest. A revision's metadata is removed by its
file id (``removefilemsg``); ``CodePublisher.remove`` (executor/publish.py) removes its S3
object first. Used by the CLI (``functions show/history/rm/rollback``) and the HTTP front end
(``GET /functions/{name}``, pinning).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import ColoniesRefused
from ..names import FunctionName

LABEL = "/faas"


class Rpc(Protocol):
    colony: str

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Revision:
    number: int  # 1 = the first deploy; 0 when unknown (looked up by file id or latest only)
    fileid: str
    sha256: str
    size: int
    added: str
    meta: dict[str, Any]  # the ColonyFS file JSON (S3 reference), for downloading

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "fileid": self.fileid,
            "sha256": self.sha256,
            "size": self.size,
            "added": self.added,
        }


def _revision(meta: dict[str, Any], number: int) -> Revision:
    size = meta.get("size", 0)
    return Revision(
        number,
        str(meta.get("fileid", "")),
        str(meta.get("checksum", "")).lower(),
        size if isinstance(size, int) else 0,
        str(meta.get("added", "")),
        meta,
    )


def _files(client: Rpc, name: FunctionName, latest: bool, label: str) -> list[dict[str, Any]]:
    try:
        files = client.rpc(
            "getfilemsg", colonyname=client.colony, fileid="", label=label, name=name, latest=latest
        )
    except ColoniesRefused as exc:
        if exc.status == 404:
            return []
        raise
    return [f for f in files or [] if isinstance(f, dict)]


def history(client: Rpc, name: FunctionName, label: str = LABEL) -> list[Revision]:
    """All revisions of ``name``, oldest first (numbered 1..n); [] if never deployed."""
    files = sorted(_files(client, name, False, label), key=lambda f: int(f.get("sequencenr", 0)))
    return [_revision(meta, i) for i, meta in enumerate(files, start=1)]


def current(client: Rpc, name: FunctionName, label: str = LABEL) -> Revision | None:
    """The newest revision (one lookup; its number is 0 = not counted), or None."""
    files = _files(client, name, True, label)
    return _revision(files[0], 0) if files else None


def remove_revision(client: Rpc, fileid: str) -> None:
    """Delete one revision's metadata, by its file id (its S3 object is the caller's:
    ``CodePublisher.remove``). By id, not by label and name: a deploy that lands meanwhile is a
    revision nobody has read yet, and it stays."""
    client.rpc("removefilemsg", colonyname=client.colony, fileid=fileid, label="", name="")
