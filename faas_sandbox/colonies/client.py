"""The Colonies client: the only module that imports pycolonies.

:class:`FastColonies` is a ``pycolonies.Colonies`` whose private RPC method is replaced:

- it signs with coincurve (libsecp256k1, ~0.1 ms) instead of pure Python (~4 ms); signatures are
  byte-identical (RFC 6979 nonces, low s; protocol §2.4);
- it keeps one ``requests.Session`` per thread (keep-alive), with a client timeout: connect 5 s,
  read 30 s, or the assign long-poll plus 15 s;
- ``host`` may list the nodes of a Colonies cluster; on a node failure requests move to the
  next node (faas_sandbox.colonies.nodes says which requests may be re-sent there);
- it classifies failures: :class:`ColoniesUnreachable` (connection refused, reset, timed out,
  or the server answering with its *database's* connection error: safe to retry) versus
  :class:`ColoniesRefused` (the server answered with an error; its message and HTTP status are
  kept).

Every pycolonies method (submit_func_spec, upload_data, get_process...) works through it.
:class:`ColoniesClient` adds the raw-JSON calls the executor needs (no pydantic parsing on the
hot path: a spec pycolonies cannot parse must still be failed, not crash the assign), and
:func:`submit_call` is the one way we submit: it always sets maxexectime and maxretries (§6.4).
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import pycolonies
import requests
from coincurve import PrivateKey
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..element import Element
from ..errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable
from ..kinds import ProcessState
from .nodes import NodeList, never_sent, parse_nodes
from .reply import (
    NO_QUORUM,
    Unreadable,
    backend_down,  # noqa: F401 - re-exported: callers check replies with it
    decode_reply,
    read_capped,
    salvage_list,
)
from .spec import encode_call_kwargs

IDLE_MESSAGE = "No process available for assignment"
PENDING, APPROVED, REJECTED, UNREGISTERED = 0, 1, 2, 3  # executor states
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 30.0
LONG_POLL_SLACK_S = 15.0
FAILED_SETTLE_S = 2.0  # how long a FAILED process may show no errors (see ColoniesClient.wait)
DEFAULT_EXECUTOR_TYPE = "faas-executor"

_keys: dict[str, PrivateKey] = {}
_keys_lock = threading.Lock()


def _private_key(prvkey: str) -> PrivateKey:
    key = _keys.get(prvkey)
    if key is None:
        key = PrivateKey(bytes.fromhex(prvkey))
        with _keys_lock:
            _keys[prvkey] = key
    return key


def sign(payload: str, prvkey: str) -> str:
    """130 hex characters r||s||v over SHA3-256 of the payload text, as pycolonies signs."""
    digest = hashlib.sha3_256(payload.encode()).digest()
    return str(_private_key(prvkey).sign_recoverable(digest, hasher=None).hex())


def key_id(prvkey: str) -> str:
    """The Colonies ID of a private key: SHA3-256 of the uncompressed public key's hex."""
    public = _private_key(prvkey).public_key.format(compressed=False)
    return hashlib.sha3_256(public.hex().encode()).hexdigest()


def new_prvkey() -> str:
    """A fresh random private key, 64 hex characters."""
    return str(PrivateKey().secret.hex())


# -- connections we can shut down from another thread (to end long-polls at shutdown) ---------

_sockets_lock = threading.Lock()
_connections: dict[int, weakref.WeakSet[HTTPConnection]] = {}


class _TrackedMixin:
    sock: socket.socket | None

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        with _sockets_lock:
            _connections.setdefault(threading.get_ident(), weakref.WeakSet()).add(self)  # type: ignore[arg-type]


class _HTTPConnection(_TrackedMixin, HTTPConnection):
    pass


class _HTTPSConnection(_TrackedMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def shutdown_connections(thread_ids: Sequence[int]) -> None:
    """Shut down the sockets of these threads' sessions, so their blocked requests end now."""
    with _sockets_lock:
        conns = [c for t in thread_ids for c in list(_connections.get(t, ()))]
    for conn in conns:
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FastColonies(pycolonies.Colonies):  # type: ignore[misc]
    """pycolonies.Colonies with coincurve signing, per-thread keep-alive and classified errors."""

    def __init__(self, host: str, port: int, tls: bool = False) -> None:
        """``host`` may list several nodes of one cluster (see faas_sandbox.colonies.nodes)."""
        self.nodes = NodeList(parse_nodes(host, port))
        first = self.nodes.nodes[0]
        super().__init__(first.host, first.port, tls)
        self.tls = tls
        self._urls = tuple(node.url(tls) for node in self.nodes.nodes)
        self._local = threading.local()
        self.aborting = False  # set at shutdown: a failed long-poll is then no node failure

    def _use(self, index: int) -> None:
        """Point pycolonies' own attributes (url, host, port) at the node in use."""
        node = self.nodes.nodes[index]
        self.url, self.host, self.port = self._urls[index], node.host, node.port

    def pubsub_url(self) -> tuple[int, str]:
        """(node index, WebSocket URL) of the node in use, for subscriptions."""
        index, node = self.nodes.current()
        return index, node.url(self.tls, "/pubsub", ws=True)

    def node_failed(self, index: int, reason: str) -> None:
        if self.nodes.failed(index, reason):
            self._use(self.nodes.current()[0])

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        now = time.monotonic()
        if session is not None and now - self._local.used > IDLE_RECONNECT_S:
            # The server drops keep-alive connections idle for 120 s; reconnect before it does,
            # so a request is never sent on a connection the server already closed.
            session.close()
            session = None
        self._local.used = now
        if session is None:
            session = requests.Session()
            session.trust_env = False  # no proxy/netrc scan of the environment per request
            adapter = _Adapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def _Colonies__rpc(self, msg: dict[str, Any], prvkey: str) -> Any:  # noqa: N802
        payload = base64.b64encode(message_bytes(msg)).decode()
        body = json.dumps({"payloadtype": msg["msgtype"], "payload": payload,
                           "signature": sign(payload, prvkey)})
        # Failover (faas_sandbox.colonies.nodes): a request that never left goes to the next node; one
        # that may have reached a server is re-sent only when repeating it is harmless: not a
        # submit (duplicate) and not an assign (the caller handles a possibly lost assignment;
        # an abort at shutdown must end it). One round over the nodes; a single node gets a
        # second try, which covers a keep-alive connection the server closed while idle.
        kind = msg["msgtype"]
        read, resend = READ_TIMEOUT_S, kind not in _NOT_IDEMPOTENT
        if kind == "assignprocessmsg":
            read, resend = max(float(msg.get("timeout", 0)), 0.0) + LONG_POLL_SLACK_S, False
        tries = max(len(self.nodes), 2)
        for attempt in range(1, tries + 1):
            index, _node = self.nodes.current()
            url = self._urls[index]
            try:
                reply = self._session().post(url, data=body, stream=True,
                                             timeout=(CONNECT_TIMEOUT_S, read))
                content, truncated = _read(reply)  # a node failing mid-body fails over too
                break
            except requests.RequestException as exc:
                reason = _short(exc)
                if self.aborting and kind == "assignprocessmsg":
                    raise ColoniesUnreachable(f"{url}: {reason}") from exc
                unsent = never_sent(exc)
                self.node_failed(index, reason)
                again = unsent or resend
                if len(self.nodes) == 1:  # the same node again: only after a dropped keep-alive
                    again = again and isinstance(exc, requests.ConnectionError) \
                        and not isinstance(exc, requests.ConnectTimeout)
                if attempt == tries or not again:
                    raise ColoniesUnreachable(f"{url}: {reason}") from exc
        try:
            result = decode_reply(content, reply.status_code, truncated)
        except ColoniesRefused:
            self.nodes.answered()
            raise
        except ColoniesUnreachable as exc:
            if NO_QUORUM in str(exc):  # this node cannot reach an etcd majority; another may
                self.node_failed(index, "no etcd quorum")
            raise
        self.nodes.answered()
        return result


def message_bytes(msg: dict[str, Any]) -> bytes:
    """A request message's JSON. An ``out`` holding output elements the sandbox made
    (:class:`~faas_sandbox.element.Element`, already checked to be one JSON number or
    string) gets their bytes spliced in as they are: a result is never decoded here."""
    out = msg.get("out")
    if not isinstance(out, list) or not any(isinstance(item, Element) for item in out):
        return json.dumps(msg, allow_nan=False).encode()
    head = json.dumps({k: v for k, v in msg.items() if k != "out"}, allow_nan=False).encode()
    items = b",".join(item if isinstance(item, Element) else
                      json.dumps(item, allow_nan=False).encode() for item in out)
    return head[:-1] + (b', "out": [' if len(head) > 2 else b'"out": [') + items + b"]}"


_NOT_IDEMPOTENT = frozenset({"submitfuncspecmsg", "submitworkflowspecmsg", "addfilemsg"})
IDLE_RECONNECT_S = 60.0
READ_CHUNK = 256 * 1024

_CAUSES = ("Connection refused", "Connection reset", "Read timed out", "Connection aborted",
           "Remote end closed", "Name or service not known", "No route to host", "timed out")


def _short(exc: BaseException) -> str:
    """The gist of a requests/urllib3 error ("Connection refused"), not its whole chain."""
    text = str(exc)
    for cause in _CAUSES:
        if cause in text:
            return cause.lower()
    return text if len(text) <= 200 else text[:200] + "..."


def _read(reply: requests.Response) -> tuple[bytes, bool]:
    """(body, truncated): at most reply.MAX_REPLY_BYTES of the body, read incrementally;
    decoding is reply.py's (raw bytes in, a value or a typed error out)."""
    try:
        return read_capped(reply.iter_content(READ_CHUNK))
    finally:
        reply.close()  # a body cut short closes the connection instead of draining it


class ColoniesClient:
    """Raw-JSON Colonies calls for one colony and one signing key (the executor's or a user's)."""

    def __init__(self, sdk: FastColonies, colony: str, prvkey: str) -> None:
        self.sdk = sdk
        self.colony = colony
        self.prvkey = prvkey
        self._assigning: set[int] = set()
        self._assigning_lock = threading.Lock()

    @classmethod
    def connect(cls, host: str, port: int, tls: bool, colony: str, prvkey: str) -> ColoniesClient:
        return cls(FastColonies(host, port, tls), colony, prvkey)

    def with_key(self, prvkey: str) -> ColoniesClient:
        """The same connection pool, signing with another key."""
        return ColoniesClient(self.sdk, self.colony, prvkey)

    def rpc(self, msgtype: str, prvkey: str | None = None, **fields: Any) -> Any:
        return self.sdk._Colonies__rpc({"msgtype": msgtype, **fields}, prvkey or self.prvkey)

    # -- the executor's hot path ------------------------------------------------------------
    def assign(self, timeout: int) -> dict[str, Any] | None:
        """Long-poll for a process; None when none came (idle, not an error)."""
        me = threading.get_ident()
        with self._assigning_lock:
            self._assigning.add(me)
        try:
            return self.rpc("assignprocessmsg", colonyname=self.colony,  # type: ignore[no-any-return]
                            timeout=timeout)
        except ColoniesRefused as exc:
            if exc.status == 404 and IDLE_MESSAGE in str(exc):
                return None
            raise
        finally:
            with self._assigning_lock:
                self._assigning.discard(me)

    def abort_assigns(self) -> None:
        """End every long-poll in progress now (shutdown); they raise ColoniesUnreachable."""
        self.sdk.aborting = True
        with self._assigning_lock:
            threads = list(self._assigning)
        shutdown_connections(threads)

    def close(self, processid: str, out: list[Any]) -> None:
        self.rpc("closesuccessfulmsg", processid=processid, out=out)

    def fail(self, processid: str, errors: list[str]) -> None:
        self.rpc("closefailedmsg", processid=processid, errors=errors)

    def add_log(self, processid: str, message: str) -> None:
        self.rpc("addlogmsg", processid=processid, message=message)

    def get_file(self, label: str, name: str) -> list[dict[str, Any]]:
        """The latest revision's metadata as a one-element list; ColoniesRefused 404 if none."""
        reply = self.rpc("getfilemsg", colonyname=self.colony, fileid="", label=label,
                         name=name, latest=True)
        return reply if isinstance(reply, list) else []

    def add_file(self, file: Mapping[str, Any]) -> dict[str, Any]:
        return self.rpc("addfilemsg", file=dict(file))  # type: ignore[no-any-return]

    # -- registration -------------------------------------------------------------------------
    def add_executor(self, name: str, executor_id: str, executor_type: str,
                     colony_prvkey: str) -> dict[str, Any]:
        return self.rpc("addexecutormsg", colony_prvkey,  # type: ignore[no-any-return]
                        executor={"executorname": name, "executorid": executor_id,
                                  "colonyname": self.colony, "executortype": executor_type})

    def approve_executor(self, name: str, colony_prvkey: str) -> None:
        self.rpc("approveexecutormsg", colony_prvkey, colonyname=self.colony, executorname=name)

    def remove_executor(self, name: str, colony_prvkey: str) -> None:
        self.rpc("removeexecutormsg", colony_prvkey, colonyname=self.colony, executorname=name)

    def get_executor(self, name: str) -> dict[str, Any]:
        return self.rpc("getexecutormsg", colonyname=self.colony,  # type: ignore[no-any-return]
                        executorname=name)

    def get_functions(self, executor_name: str) -> list[dict[str, Any]]:
        reply = self.rpc("getfunctionsmsg", colonyname=self.colony, executorname=executor_name)
        return reply or []

    def add_function(self, executor_name: str, funcname: str) -> None:
        self.rpc("addfunctionmsg", fun={"executorname": executor_name,
                                        "colonyname": self.colony, "funcname": funcname})

    # -- submitters ---------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a spec dict as is (see call_spec); the reply is the process JSON."""
        if spec.get("maxexectime", 0) == 0:
            raise ValueError("maxexectime 0 fails or requeues the process about 1 s after "
                             "assignment (protocol §6.4); use -1 or a positive number")
        return self.rpc("submitfuncspecmsg", spec=dict(spec))  # type: ignore[no-any-return]

    def get_process(self, processid: str) -> dict[str, Any]:
        return self.rpc("getprocessmsg", processid=processid)  # type: ignore[no-any-return]

    def list_processes(self, state: int, count: int = 100,
                       executortype: str = "") -> list[dict[str, Any] | Unreadable]:
        """Processes in ``state``; one that cannot be read comes as an :class:`Unreadable`
        (with its processid when that could be salvaged), not as a failed listing."""
        try:
            reply = self.rpc("getprocessesmsg", colonyname=self.colony, count=count,
                             state=state, executortype=executortype)
        except ReplyUnreadable as exc:
            return salvage_list(exc)
        return reply if isinstance(reply, list) else []

    def get_logs(self, processid: str, count: int = 100) -> list[dict[str, Any]]:
        reply = self.rpc("getlogsmsg", colonyname=self.colony, executorid="", executorname="",
                         processid=processid, count=count, since=-1)
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


def call_spec(function: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None,
              *, colony: str, maxexectime: int, maxretries: int,
              executortype: str = DEFAULT_EXECUTOR_TYPE, maxwaittime: int = -1,
              priority: int = 0, executornames: Sequence[str] | None = None) -> dict[str, Any]:
    """The spec dict that asks a faas executor for ``function(*args, **kwargs)``.

    maxexectime and maxretries have no defaults on purpose: 0 is refused (§6.4); pass -1 for
    "no limit" / "requeue forever", or positive numbers.
    """
    if isinstance(maxexectime, bool) or not isinstance(maxexectime, int) or maxexectime == 0 \
            or maxexectime < -1:
        raise ValueError(f"maxexectime must be -1 or a positive whole number, got {maxexectime!r}")
    if isinstance(maxretries, bool) or not isinstance(maxretries, int) or maxretries < -1:
        raise ValueError(f"maxretries must be -1 or a whole number >= 0, got {maxretries!r}")
    return {
        "nodename": "execute", "funcname": "execute", "args": [],
        "kwargs": encode_call_kwargs(function, args, kwargs),
        "priority": priority, "maxwaittime": maxwaittime, "maxexectime": maxexectime,
        "maxretries": maxretries, "label": "", "env": {},
        "conditions": {"colonyname": colony, "executortype": executortype,
                       "executornames": list(executornames) if executornames else None},
    }


def submit_call(client: ColoniesClient, function: str, args: Sequence[Any] = (),
                kwargs: Mapping[str, Any] | None = None, *, maxexectime: int, maxretries: int,
                **options: Any) -> dict[str, Any]:
    """Submit one call (call_spec) and return the process JSON; see call_spec for options."""
    spec = call_spec(function, args, kwargs, colony=client.colony, maxexectime=maxexectime,
                     maxretries=maxretries, **options)
    return client.submit(spec)
