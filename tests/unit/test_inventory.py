"""`functions` and `status` data from literal Colonies replies (protocol §4.1, §4.2, §4.9)."""

from __future__ import annotations

from typing import Any

from faas_sandbox.colonies.inventory import colony_status, list_functions


class FakeRpc:
    colony = "dev"

    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any:
        self.calls.append((msgtype, fields))
        reply = self.replies[msgtype]
        return reply(fields) if callable(reply) else reply


def version(name: str, seq: int, size: int, added: str) -> dict[str, Any]:
    return {
        "fileid": f"{name}-{seq}",
        "name": name,
        "label": "/faas",
        "size": size,
        "sequencenr": seq,
        "added": added,
    }


def test_functions_have_size_revisions_and_latest_deploy_time() -> None:
    versions = {
        "convert": [
            version("convert", 9, 54, "2026-01-02T00:00:00Z"),
            version("convert", 3, 50, "2026-01-01T00:00:00Z"),
        ],
        "add": [version("add", 5, 70, "2026-01-03T00:00:00Z")],
    }
    rpc = FakeRpc(
        {
            "getfilesmsg": [
                {"name": "convert", "size": 54, "checksum": "c", "s3filename": "x"},
                {"name": "add", "size": 70, "checksum": "d", "s3filename": "y"},
            ],
            "getfilemsg": lambda fields: versions[fields["name"]],
        }
    )
    functions = list_functions(rpc)
    assert [(f.name, f.size, f.revisions, f.deployed_at) for f in functions] == [
        ("add", 70, 1, "2026-01-03T00:00:00Z"),
        ("convert", 54, 2, "2026-01-02T00:00:00Z"),
    ]
    assert (
        "getfilemsg",
        {"colonyname": "dev", "fileid": "", "label": "/faas", "name": "convert", "latest": False},
    ) in rpc.calls


def test_no_functions_is_an_empty_list() -> None:
    assert list_functions(FakeRpc({"getfilesmsg": []})) == []


def test_status_counts_processes_and_names_executor_states() -> None:
    rpc = FakeRpc(
        {
            "getcolonystatsmsg": {
                "waitingprocesses": 2,
                "runningprocesses": 1,
                "successfulprocesses": 40,
                "failedprocesses": 3,
                "cancelledprocesses": 0,
                "executors": 3,
            },
            "getexecutorsmsg": [
                {
                    "executorname": "old",
                    "executortype": "faas-executor",
                    "state": 3,
                    "lastheardfromtime": "2026-01-01T00:00:00Z",
                },
                {
                    "executorname": "faas-a",
                    "executortype": "faas-executor",
                    "state": 1,
                    "lastheardfromtime": "2026-01-02T00:00:00Z",
                },
                {
                    "executorname": "new",
                    "executortype": "faas-executor",
                    "state": 0,
                    "lastheardfromtime": "0001-01-01T00:00:00Z",
                },
            ],
        }
    )
    status = colony_status(rpc)
    assert status.processes == {
        "waiting": 2,
        "running": 1,
        "successful": 40,
        "failed": 3,
        "cancelled": 0,
    }
    assert [(e.name, e.state, e.last_heard) for e in status.executors] == [
        ("faas-a", "approved", "2026-01-02T00:00:00Z"),
        ("new", "pending", ""),
        ("old", "unregistered", "2026-01-01T00:00:00Z"),
    ]


def test_status_tolerates_null_lists() -> None:
    status = colony_status(FakeRpc({"getcolonystatsmsg": {}, "getexecutorsmsg": None}))
    assert status.executors == []
    assert status.processes["waiting"] == 0
