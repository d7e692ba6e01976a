"""Who the executor is: its own fresh key (self-registered) or an identity an operator made.

``--identity`` decides:

self
    Needs COLONIES_COLONY_PRVKEY. A fresh key is generated; the executor is added and approved
    with the colony key (as the tutorial does), registers the function ``execute``, and is
    removed again with the colony key when it stops (the server then requeues anything still
    assigned to it, without counting a retry).
operator
    Needs COLONIES_PRVKEY + COLONIES_EXECUTOR_NAME naming an executor that exists, is approved,
    has that key and has the wanted type. It is never removed by us.
auto (default)
    ``operator`` when the operator identity is set and checks out (exists, approved, same key,
    same type); otherwise ``self`` when the colony key is set; otherwise an error. So a shell with
    both sets of variables (our dev stack: COLONIES_PRVKEY is the member ``dev-cli`` of type
    ``cli``) self-registers, and a production host holding only its own key uses it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..colonies.client import ColoniesClient, key_id, new_prvkey
from ..colonies.spec import EXECUTE
from ..errors import ColoniesRefused, ColoniesUnreachable, ReplyUnreadable, SettingsError
from ..kinds import ExecutorState
from ..settings import Settings
from .delivery import Backoff, Reachability

log = logging.getLogger(__name__)
T = TypeVar("T")
MODES = ("auto", "self", "operator")


class Interrupted(Exception):
    """Raised when a stop was requested while waiting for Colonies."""


@dataclass(frozen=True, slots=True)
class Identity:
    name: str
    executor_id: str
    prvkey: str = field(repr=False)
    self_registered: bool


def default_name() -> str:
    """``faas-<host>-<pid>``: readable, and unique per host at any one time."""
    return f"faas-{socket.gethostname().split('.')[0]}-{os.getpid()}"


def retrying(
    what: str, fn: Callable[[], T], stop: Callable[[], bool], deadline: float | None = None
) -> T:
    """``fn()``, retried with backoff while Colonies is unreachable (one log line per change)."""
    reach, backoff = Reachability(), Backoff(initial=0.5, maximum=10.0)
    while True:
        try:
            result = fn()
        except ColoniesUnreachable as exc:
            reach.down(exc)
            if stop() or (deadline is not None and time.monotonic() >= deadline):
                raise Interrupted(f"{what}: colonies unreachable") from exc
            delay = backoff.next()
            end = time.monotonic() + delay
            while time.monotonic() < end and not stop():
                time.sleep(0.05)
            continue
        reach.up()
        return result


def establish(
    settings: Settings,
    client: ColoniesClient,
    *,
    mode: str,
    name: str | None,
    executor_type: str,
    stop: Callable[[], bool],
) -> Identity:
    """Resolve and (for ``self``) register the identity; SettingsError for bad configuration."""
    if mode not in MODES:
        raise SettingsError(f"--identity must be one of {MODES}, got {mode!r}")
    operator_set = settings.prvkey is not None and settings.executor_name is not None
    if mode == "operator" or (mode == "auto" and operator_set):
        if not operator_set:
            raise SettingsError(
                "--identity operator needs COLONIES_PRVKEY and COLONIES_EXECUTOR_NAME"
            )
        problem = retrying(
            "checking the operator identity",
            lambda: _check_operator(settings, client, executor_type),
            stop,
        )
        if problem is None:
            assert settings.prvkey is not None and settings.executor_name is not None
            identity = Identity(
                settings.executor_name, key_id(settings.prvkey), settings.prvkey, False
            )
            retrying("registering the function", lambda: _ensure_function(client, identity), stop)
            log.info("executor %s: using the operator's identity", identity.name)
            return identity
        if mode == "operator" or settings.colony_prvkey is None:
            raise SettingsError(
                f"operator identity COLONIES_EXECUTOR_NAME={settings.executor_name}: {problem}"
            )
        log.info(
            "operator identity %s not usable here (%s); registering our own",
            settings.executor_name,
            problem,
        )
    if settings.colony_prvkey is None:
        raise SettingsError(
            "need COLONIES_COLONY_PRVKEY (to register this executor) or "
            "COLONIES_PRVKEY + COLONIES_EXECUTOR_NAME (an operator's executor)"
        )
    return _register(client, settings.colony_prvkey, name or default_name(), executor_type, stop)


def _check_operator(settings: Settings, client: ColoniesClient, executor_type: str) -> str | None:
    """None when the operator identity can serve ``executor_type``; else what is wrong."""
    assert settings.prvkey is not None and settings.executor_name is not None
    try:
        executor: dict[str, Any] = client.with_key(settings.prvkey).get_executor(
            settings.executor_name
        )
    except ColoniesRefused as exc:
        return f"not found or not approved ({exc})"
    if executor.get("executorid") != key_id(settings.prvkey):
        return "COLONIES_PRVKEY is not that executor's key"
    if executor.get("state") != ExecutorState.APPROVED:
        return "not approved"
    if executor.get("executortype") != executor_type:
        return f"its type is {executor.get('executortype')!r}, not {executor_type!r}"
    return None


def _ensure_function(client: ColoniesClient, identity: Identity) -> None:
    mine = client.with_key(identity.prvkey)
    if not any(f.get("funcname") == EXECUTE for f in mine.get_functions(identity.name)):
        mine.add_function(identity.name, EXECUTE)


def _register(
    client: ColoniesClient,
    colony_prvkey: str,
    name: str,
    executor_type: str,
    stop: Callable[[], bool],
) -> Identity:
    prvkey = new_prvkey()
    identity = Identity(name, key_id(prvkey), prvkey, True)
    try:
        retrying(
            "registering",
            lambda: client.add_executor(name, identity.executor_id, executor_type, colony_prvkey),
            stop,
        )
        retrying("approving", lambda: client.approve_executor(name, colony_prvkey), stop)
        retrying(
            "registering the function",
            lambda: client.with_key(prvkey).add_function(name, EXECUTE),
            stop,
        )
    except ColoniesRefused as exc:
        raise SettingsError(f"cannot register executor {name!r}: {exc}") from None
    log.info(
        "executor %s registered (type %s, id %s)", name, executor_type, identity.executor_id[:12]
    )
    return identity


def unregister(
    client: ColoniesClient,
    identity: Identity,
    colony_prvkey: str | None,
    stop: Callable[[], bool],
    timeout: float = 10.0,
) -> None:
    """Remove a self-registered executor (never an operator's); gives up after ``timeout``."""
    if not identity.self_registered or colony_prvkey is None:
        return
    try:
        retrying(
            "unregistering",
            lambda: client.remove_executor(identity.name, colony_prvkey),
            stop,
            deadline=time.monotonic() + timeout,
        )
    except Interrupted:
        log.error("executor %s not unregistered: colonies unreachable", identity.name)
        return
    except (ColoniesRefused, ReplyUnreadable) as exc:
        log.warning("executor %s: unregister refused (%s)", identity.name, exc)
        return
    log.info("executor %s unregistered", identity.name)
