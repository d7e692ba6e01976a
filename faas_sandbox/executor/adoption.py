"""Serving the processes assigned to this executor whose assign reply never arrived.

Colonies v1.9.12 can commit an assignment and then fail the rest of the assign request
(intake.py). So an assign that failed as unreachable makes the executor *suspect* that it holds
a process it does not know of; after the next successful assign, one worker lists the
executor's RUNNING processes (:func:`~faas_sandbox.executor.intake.orphans`) and serves those it
does not know (in flight, served lately, let go, or with a report not yet delivered). A listing
that fails as unreachable leaves the suspicion for the next successful assign.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ColoniesError, ColoniesUnreachable
from .intake import Reader, orphans, started_ago

log = logging.getLogger("faas_sandbox.executor.loop")  # the executor's log lines, one name


class Server(Protocol):
    def serve(self, process: dict[str, Any], received: float | None = None) -> None: ...
    def unreadable(self, processid: str | None, reason: str, where: str) -> None: ...


class Adoption:
    """The suspicion of orphaned assignments, and the look for them."""

    def __init__(
        self,
        client: Reader,
        executor_id: str | None,
        executor_type: str | None,
        calls: Server,
        *,
        known: Callable[[str], bool],
        stopping: threading.Event,
        clock: Callable[[], float],
    ) -> None:
        self.client, self.calls = client, calls
        self.executor_id, self.executor_type = executor_id, executor_type
        self.known, self.stopping, self._clock = known, stopping, clock
        self._lock = threading.Lock()
        self._suspect = False  # an assign failed as unreachable: it may have assigned us one

    def suspect(self) -> None:
        """An assign failed as unreachable: look once the server answers again."""
        self._suspect = True

    def due(self) -> bool:
        """Whether to look now (then the suspicion is taken: one worker looks)."""
        if not self._suspect:
            return False
        with self._lock:
            suspect, self._suspect = self._suspect, False
        return suspect

    def adopt(self) -> None:
        """Serve processes assigned to us whose assign reply never arrived (intake.py)."""
        if not self.executor_id or not self.executor_type:
            return
        now = time.time()
        try:
            for processid, process, reason in orphans(
                self.client, self.executor_id, self.executor_type, self.known
            ):
                if self.stopping.is_set():
                    return
                if process is None:
                    self.calls.unreadable(processid, reason, "listing")
                    continue
                log.warning(
                    "call %s: assigned to us while colonies was failing, but its "
                    "assign reply never came; serving it now",
                    processid,
                )
                self.calls.serve(process, self._clock() - started_ago(process, now))
        except ColoniesError as exc:
            if isinstance(exc, ColoniesUnreachable):
                self._suspect = True  # look again after the next successful assign
            log.warning("could not look for calls assigned to us during the outage (%s)", exc)
