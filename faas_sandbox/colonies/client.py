"""Colonies calls for one colony and one signing key, over our transport.

:class:`ColoniesClient` gives each RPC the executor, the front end, the CLI and the tools use a
method, on raw JSON (no pydantic parsing on the hot path: a spec no model can parse must still
be failed, not crash the assign). It sends through a :class:`~faas_sandbox.colonies.transport.
Transport` (signing, keep-alive, timeouts, node failover, decoding, error classes), which
:meth:`ColoniesClient.with_key` shares between keys. :func:`submit_call` is the one way we
submit: it always sets maxexectime and maxretries (protocol §6.4).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ColoniesRefused, ReplyUnreadable
from ..kinds import ProcessState
from .reply import Unreadable, salvage_list
from .reply import backend_down as backend_down  # re-exported: callers check replies with it
from .signing import key_id as key_id  # re-exported: the identities every layer needs
from .signing import message_bytes as message_bytes
from .signing import new_prvkey as new_prvkey
from .signing import sign as sign
from .spec import encode_call_kwargs
from .transport import Transport

IDLE_MESSAGE = "No process available for assignment"
FAILED_SETTLE_S = 2.0  # how long a FAILED process may show no errors (see ColoniesClient.wait)
DEFAULT_EXECUTOR_TYPE = "faas-executor"


class ColoniesClient:
    """Raw-JSON Colonies calls for one colony and one signing key (the executor's or a user's)."""

    def __init__(self, transport: Transport, colony: str, prvkey: str) -> None:
        self.transport = transport
        self.colony = colony
        self.prvkey = prvkey
        self._assigning: set[int] = set()
        self._assigning_lock = threading.Lock()

    @classmethod
    def connect(cls, host: str, port: int, tls: bool, colony: str, prvkey: str) -> ColoniesClient:
        return cls(Transport(host, port, tls), colony, prvkey)

    def with_key(self, prvkey: str) -> ColoniesClient:
        """The same connection pool, signing with another key."""
        return ColoniesClient(self.transport, self.colony, prvkey)

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any:
        """Send one message of type ``msgtype`` with ``fields``, signed with ``prvkey`` (by
        default the client's key); the reply's payload value."""
        return self.transport.call({"msgtype": msgtype, **fields}, prvkey or self.prvkey)

    # -- the executor's hot path ------------------------------------------------------------
    def assign(self, timeout: int) -> dict[str, Any] | None:
        """Long-poll for a process; None when none came (idle, not an error)."""
        me = threading.get_ident()
        with self._assigning_lock:
            self._assigning.add(me)
        try:
            return self.rpc(  # type: ignore[no-any-return]
                "assignprocessmsg",
                colonyname=self.colony,
                timeout=timeout,
            )
        except ColoniesRefused as exc:
            if exc.status == 404 and IDLE_MESSAGE in str(exc):
                return None
            raise
        finally:
            with self._assigning_lock:
                self._assigning.discard(me)

    def abort_assigns(self) -> None:
        """End every long-poll in progress now (shutdown); they raise ColoniesUnreachable."""
        self.transport.aborting = True
        with self._assigning_lock:
            threads = list(self._assigning)
        self.transport.interrupt(threads)

    def close(self, processid: str, out: list[Any]) -> None:
        self.rpc("closesuccessfulmsg", processid=processid, out=out)

    def fail(self, processid: str, errors: list[str]) -> None:
        self.rpc("closefailedmsg", processid=processid, errors=errors)

    def add_log(self, processid: str, message: str) -> None:
        self.rpc("addlogmsg", processid=processid, message=message)

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]:
        """The latest revision's metadata as a one-element list; ColoniesRefused 404 if none."""
        reply = self.rpc(
            "getfilemsg", colonyname=self.colony, fileid="", label=label, name=name, latest=True
        )
        return reply if isinstance(reply, list) else []

    def add_file(self, file: Mapping[str, Any]) -> dict[str, Any]:
        return self.rpc("addfilemsg", file=dict(file))  # type: ignore[no-any-return]

    # -- registration -------------------------------------------------------------------------
    def add_executor(
        self, name: str, executor_id: str, executor_type: str, colony_prvkey: str
    ) -> dict[str, Any]:
        return self.rpc(  # type: ignore[no-any-return]
            "addexecutormsg",
            colony_prvkey,
            executor={
                "executorname": name,
                "executorid": executor_id,
                "colonyname": self.colony,
                "executortype": executor_type,
            },
        )

    def approve_executor(self, name: str, colony_prvkey: str) -> None:
        self.rpc("approveexecutormsg", colony_prvkey, colonyname=self.colony, executorname=name)

    def remove_executor(self, name: str, colony_prvkey: str) -> None:
        self.rpc("removeexecutormsg", colony_prvkey, colonyname=self.colony, executorname=name)

    def get_executor(self, name: str) -> dict[str, Any]:
        return self.rpc(  # type: ignore[no-any-return]
            "getexecutormsg",
            colonyname=self.colony,
            executorname=name,
        )

    def get_functions(self, executor_name: str) -> list[dict[str, Any]]:
        reply = self.rpc("getfunctionsmsg", colonyname=self.colony, executorname=executor_name)
        return reply or []

    def add_function(self, executor_name: str, funcname: str) -> None:
        self.rpc(
            "addfunctionmsg",
            fun={"executorname": executor_name, "colonyname": self.colony, "funcname": funcname},
        )

    # -- submitters ---------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a spec dict as is (see call_spec); the reply is the process JSON."""
        if spec.get("maxexectime", 0) == 0:
            raise ValueError(
                "maxexectime 0 fails or requeues the process about 1 s after "
                "assignment (protocol §6.4); use -1 or a positive number"
            )
        return self.rpc("submitfuncspecmsg", spec=dict(spec))  # type: ignore[no-any-return]

    def get_process(self, processid: str) -> dict[str, Any]:
        return self.rpc("getprocessmsg", processid=processid)  # type: ignore[no-any-return]

    def list_processes(
        self, state: int, count: int = 100, executortype: str = ""
    ) -> list[dict[str, Any] | Unreadable]:
        """Processes in ``state``; one that cannot be read comes as an :class:`Unreadable`
        (with its processid when that could be salvaged), not as a failed listing."""
        try:
            reply = self.rpc(
                "getprocessesmsg",
                colonyname=self.colony,
                count=count,
                state=state,
                executortype=executortype,
            )
        except ReplyUnreadable as exc:
            return salvage_list(exc)
        return reply if isinstance(reply, list) else []

    def get_logs(self, processid: str, count: int = 100) -> list[dict[str, Any]]:
        reply = self.rpc(
            "getlogsmsg",
            colonyname=self.colony,
            executorid="",
            executorname="",
            processid=processid,
            count=count,
            since=-1,
        )
        return reply or []

    def wait(self, processid: str, timeout: float, poll: float = 0.05) -> dict[str, Any]:
        """Poll until the process is SUCCESS, FAILED or CANCELLED, or ``timeout`` passes.

        pycolonies' wait() returns only on SUCCESS (§4.8); this returns on any end state and
        otherwise the last state seen. FAILED with no errors yet is not an end state for up to
        ``FAILED_SETTLE_S``: Colonies v1.9.12 writes a failed process's state, then (in another
        statement) its errors, so a reader in between sees a failure without its reason.
        """
        deadline = time.monotonic() + timeout
        bare_since: float | None = None
        while True:
            process = self.get_process(processid)
            state = process.get("state")
            if state == ProcessState.FAILED and not process.get("errors"):
                bare_since = bare_since or time.monotonic()
                if time.monotonic() - bare_since < FAILED_SETTLE_S:
                    time.sleep(0.02)
                    continue
            if state in (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED):
                return process
            left = deadline - time.monotonic()
            if left <= 0:
                return process
            time.sleep(min(poll, left))
            poll = min(poll * 1.5, 0.5)


def call_spec(
    function: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    colony: str,
    maxexectime: int,
    maxretries: int,
    executortype: str = DEFAULT_EXECUTOR_TYPE,
    maxwaittime: int = -1,
    priority: int = 0,
    executornames: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The spec dict that asks a faas executor for ``function(*args, **kwargs)``.

    maxexectime and maxretries have no defaults on purpose: 0 is refused (§6.4); pass -1 for
    "no limit" / "requeue forever", or positive numbers.
    """
    if (
        isinstance(maxexectime, bool)
        or not isinstance(maxexectime, int)
        or maxexectime == 0
        or maxexectime < -1
    ):
        raise ValueError(f"maxexectime must be -1 or a positive whole number, got {maxexectime!r}")
    if isinstance(maxretries, bool) or not isinstance(maxretries, int) or maxretries < -1:
        raise ValueError(f"maxretries must be -1 or a whole number >= 0, got {maxretries!r}")
    return {
        "nodename": "execute",
        "funcname": "execute",
        "args": [],
        "kwargs": encode_call_kwargs(function, args, kwargs),
        "priority": priority,
        "maxwaittime": maxwaittime,
        "maxexectime": maxexectime,
        "maxretries": maxretries,
        "label": "",
        "env": {},
        "conditions": {
            "colonyname": colony,
            "executortype": executortype,
            "executornames": list(executornames) if executornames else None,
        },
    }


def submit_call(
    client: ColoniesClient,
    function: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    *,
    maxexectime: int,
    maxretries: int,
    **options: Any,
) -> dict[str, Any]:
    """Submit one call (call_spec) and return the process JSON; see call_spec for options."""
    spec = call_spec(
        function,
        args,
        kwargs,
        colony=client.colony,
        maxexectime=maxexectime,
        maxretries=maxretries,
        **options,
    )
    return client.submit(spec)
