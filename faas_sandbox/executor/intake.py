"""What the executor takes from the server besides assign replies: orphaned assignments after
an outage, and processes whose env the server had not written yet. Every read is bounded
(reply.py); an unreadable process comes back as its id and a reason, to be failed as ``spec``.

Orphans: Colonies v1.9.12 commits an assignment (one UPDATE) before the rest of the assign
request runs; when that rest fails (its database going away), the executor gets an error while
the server has the process RUNNING on it. :func:`orphans` lists the oldest RUNNING processes of
the executor's type (at most 100) and yields those assigned to it. A listing with an unreadable
process is cut into elements (reply.salvage_list); an unreadable element is fetched alone by id.

Env race: Colonies v1.9.12 inserts a process row (assignable at once) before its env
attributes, so an assign can see inline code without its ``env.code``: :func:`reread_env`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Protocol

from ..colonies.reply import Unreadable
from ..colonies.spec import EXECUTE
from ..errors import ColoniesError, ReplyUnreadable
from ..kinds import ProcessState

log = logging.getLogger(__name__)

REREAD_DELAYS_S = (0.05, 0.1, 0.2)


class Reader(Protocol):
    def list_processes(
        self, state: int, count: int = 100, executortype: str = ""
    ) -> list[dict[str, Any] | Unreadable]: ...
    def get_process(self, processid: str) -> dict[str, Any]: ...


def orphans(
    client: Reader, executor_id: str, executor_type: str, known: Callable[[str], bool]
) -> Iterator[tuple[str, dict[str, Any] | None, str]]:
    """Yield ``(processid, process, "")`` to serve, or ``(processid, None, reason)`` to fail as
    spec, for RUNNING processes assigned to ``executor_id`` that ``known(processid)`` does not
    claim. ColoniesError from the listing itself propagates."""
    for process in client.list_processes(ProcessState.RUNNING, 100, executor_type):
        fields = process.fields if isinstance(process, Unreadable) else process
        processid = fields.get("processid") if isinstance(fields, dict) else None
        if not isinstance(processid, str) or not processid or known(processid):
            continue
        if isinstance(process, Unreadable):  # e.g. cut short by the listing's size cap
            try:
                process = client.get_process(processid)
            except ReplyUnreadable as exc:
                if exc.fields.get("assignedexecutorid", executor_id) == executor_id:
                    yield processid, None, str(exc)
                continue
            except ColoniesError as exc:
                log.warning("call %s: could not read it (%s)", processid, exc)
                continue
            if not isinstance(process, dict) or process.get("state") != ProcessState.RUNNING:
                continue
        if process.get("assignedexecutorid") == executor_id:
            yield processid, process, ""


def lacks_env(process: dict[str, Any]) -> bool:
    """Whether a process looks like inline code whose env the server had not written yet."""
    spec = process.get("spec")
    return (
        isinstance(spec, dict)
        and spec.get("funcname") != EXECUTE
        and not spec.get("env")
        and not process.get("attributes")
    )


def reread_env(
    client: Reader, processid: str, wait: Callable[[float], Any]
) -> dict[str, Any] | None:
    """The process read again until its env or attributes show (~0.35 s at most), or None."""
    for delay in REREAD_DELAYS_S:
        wait(delay)
        try:
            again = client.get_process(processid)
        except ColoniesError:
            return None
        if isinstance(again, dict) and not lacks_env(again):
            return again
    return None


def started_ago(process: dict[str, Any], now: float) -> float:
    """Seconds since the server started the process (0 when unknown), at most maxexectime."""
    try:
        started = datetime.fromisoformat(str(process["starttime"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return 0.0
    spec = process.get("spec")
    limit = spec.get("maxexectime") if isinstance(spec, dict) else None
    ceiling = float(limit) if isinstance(limit, (int, float)) and limit > 0 else 3600.0
    return min(max(0.0, now - started), ceiling)
