"""What is deployed and what the colony is doing: read-only Colonies queries for the CLI.

- :func:`list_functions`: ColonyFS label ``/faas`` (protocol §4.9): ``getfilesmsg`` gives the
  latest revision of each name; ``getfilemsg`` with ``latest: false`` gives all revisions.
- :func:`colony_status`: ``getcolonystatsmsg`` counts and ``getexecutorsmsg`` (protocol §4.1-4.2).

Raises ColoniesUnreachable / ColoniesRefused like every client call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..kinds import ExecutorState, ProcessState
from .lifecycle import LABEL

_ZERO_TIME = "0001-01-01T00:00:00Z"


class Rpc(Protocol):
    colony: str

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class DeployedFunction:
    name: str
    size: int  # bytes of the latest revision
    revisions: int
    deployed_at: str  # RFC 3339 time the latest revision was added
    fileid: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "revisions": self.revisions,
            "deployed_at": self.deployed_at,
            "fileid": self.fileid,
        }


@dataclass(frozen=True, slots=True)
class ExecutorInfo:
    name: str
    type: str
    state: str
    last_heard: str  # RFC 3339, or "" if it never called assign

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "state": self.state,
            "last_heard": self.last_heard,
        }


@dataclass(frozen=True, slots=True)
class ColonyStatus:
    colony: str
    executors: list[ExecutorInfo]
    processes: dict[str, int]  # waiting, running, successful, failed, cancelled

    def to_json(self) -> dict[str, Any]:
        return {
            "colony": self.colony,
            "executors": [e.to_json() for e in self.executors],
            "processes": dict(self.processes),
        }


def list_functions(client: Rpc, label: str = LABEL) -> list[DeployedFunction]:
    """Every function under ``label``, sorted by name."""
    latest = client.rpc("getfilesmsg", colonyname=client.colony, label=label) or []
    functions = []
    for entry in latest:
        name = str(entry.get("name", ""))
        versions = (
            client.rpc(
                "getfilemsg",
                colonyname=client.colony,
                fileid="",
                label=label,
                name=name,
                latest=False,
            )
            or []
        )
        newest: dict[str, Any] = max(
            versions, key=lambda v: int(v.get("sequencenr", 0)), default={}
        )
        functions.append(
            DeployedFunction(
                name=name,
                size=int(entry.get("size", newest.get("size", 0)) or 0),
                revisions=len(versions),
                deployed_at=str(newest.get("added", "")),
                fileid=str(newest.get("fileid", "")),
            )
        )
    return sorted(functions, key=lambda f: f.name)


def colony_status(client: Rpc) -> ColonyStatus:
    """The colony's executors (all registered rows) and process counts by state."""
    stats = client.rpc("getcolonystatsmsg", colonyname=client.colony) or {}
    rows = client.rpc("getexecutorsmsg", colonyname=client.colony) or []
    executors = [
        ExecutorInfo(
            name=str(row.get("executorname", "")),
            type=str(row.get("executortype", "")),
            state=_executor_state(row.get("state")),
            last_heard=""
            if row.get("lastheardfromtime") in (None, _ZERO_TIME)
            else str(row["lastheardfromtime"]),
        )
        for row in rows
    ]
    executors.sort(key=lambda e: (e.state != ExecutorState.APPROVED.label, e.name))
    processes = {
        state.label: int(stats.get(f"{state.label}processes", 0) or 0) for state in ProcessState
    }
    return ColonyStatus(client.colony, executors, processes)


def _executor_state(value: Any) -> str:
    """The state's name, or the value as text when it is no state we know."""
    try:
        return ExecutorState(int(value)).label
    except (TypeError, ValueError):
        return str(value)
