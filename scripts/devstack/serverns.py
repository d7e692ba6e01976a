"""The Colonies server in a network namespace of its own, reached through a loopback forward.

Colonies v1.9.12 binds its API, its embedded etcd (no TLS, no authentication) and its relay
on every interface, whatever ``--etcdhost`` says. As root, with ``ip`` (iproute2), the stack
therefore runs the server in the network namespace ``config.NETNS`` (``faasdev-<API port>``):

- the namespace has a loopback interface and nothing else (no veth, no route), so nothing
  outside it reaches the API, etcd or the relay directly;
- the server reaches PostgreSQL through PostgreSQL's unix socket (services.colonies);
- devstack/forward.py, in the root namespace, listens on 127.0.0.1:<API port> only and makes
  each connection to the API from inside the namespace.

Without root or ``ip``, when the namespace cannot be made, or with ``FAAS_SANDBOX_NETNS=off``,
the server runs in the root namespace as before, on every interface, and ``up`` says so.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Collection, Mapping
from contextlib import suppress
from dataclasses import replace

from . import config, procs, services, setns
from .netns import ip
from .procs import Daemon, StackError, say


def unavailable() -> str | None:
    """Why the server cannot have a namespace here (None: it can, as far as we can tell)."""
    if config.NETNS is None:
        return "FAAS_SANDBOX_NETNS=off"
    if not config.IS_ROOT:
        return "not running as root"
    if not shutil.which("ip"):
        return "`ip` (iproute2) is not installed"
    return None


def wanted() -> str | None:
    return None if unavailable() else config.NETNS


def exists(name: str) -> bool:
    return setns.path(name).exists()


def prepare() -> str | None:
    """The namespace, made when missing; None (and a loud line saying why) when there is none."""
    why = unavailable()
    if why is None and config.NETNS is not None:
        try:
            if not exists(config.NETNS):
                ip("netns", "add", config.NETNS)
                say(f"created network namespace {config.NETNS} for the Colonies server")
            ip("-n", config.NETNS, "link", "set", "lo", "up")
            ip("netns", "exec", config.NETNS, "true")  # what starting the server there needs
            return config.NETNS
        except StackError as err:
            why = str(err)
    say(
        f"NOT PRIVATE: the Colonies server runs in the root network namespace ({why}): its API "
        f"(:{config.COLONIES_PORT}), etcd (:{config.ETCD_CLIENT_PORT}, :{config.ETCD_PEER_PORT}"
        f") and relay (:{config.RELAY_PORT}) listen on every interface; see README.md, "
        f"'What the local stack exposes'"
    )
    return None


def server(keys: Mapping[str, str], netns: str | None) -> Daemon:
    """The server's description for where it runs now; for ``netns`` when it does not run."""
    daemon = services.colonies(keys, netns)
    pid = procs.running_pid(daemon)
    if pid is None or setns.runs_in(pid, netns):
        return daemon
    where = procs.placement(pid)
    if where is None and not setns.runs_in(pid, None):  # a namespace deleted under it
        return replace(daemon, netns="", ports=())
    return services.colonies(keys, where)


def ensure(keys: Mapping[str, str]) -> None:
    """The server (and its forward) running and healthy, in its namespace when it can have one."""
    netns = prepare()
    current = server(keys, netns)
    if current.netns != netns:
        where = f"network namespace {netns}" if netns else "the root network namespace"
        say(f"colonies runs elsewhere: moving it into {where}")
        procs.stop(current)
    desired = services.colonies(keys, netns)
    if netns is None:
        procs.stop(services.forward(config.NETNS_NAME))  # left from a run in the namespace
        remove()
        procs.ensure(desired)
        return
    if procs.running_pid(desired) is None:
        clear(netns)
    procs.ensure(services.forward(netns))
    procs.ensure(desired)


def stop(keys: Mapping[str, str]) -> list[str]:
    """Stop the server, then its forward; returns the names of what was stopped."""
    stopped = []
    if procs.stop(server(keys, wanted())):
        stopped.append("colonies")
    if procs.stop(services.forward(config.NETNS_NAME)):
        stopped.append("colonies-forward")
    return stopped


def pids_inside(name: str) -> list[int]:
    if not exists(name):
        return []
    listed = ip("netns", "pids", name, check=False).stdout.split()
    return [int(pid) for pid in listed if pid.isdigit()]


def clear(name: str, keep: Collection[int] = ()) -> None:
    """Stop what an earlier, interrupted run left in our namespace (only the stack starts
    processes there), by pid: TERM, then KILL after 10 s."""
    left = [pid for pid in pids_inside(name) if pid not in keep]
    for pid in left:
        say(f"stopping pid {pid}, left in network namespace {name} by an earlier run")
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [pid for pid in left if setns.runs_in(pid, name)]
    for pid in left:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove() -> bool:
    """Delete the namespace (and whatever still runs in it); True when there was one."""
    name = config.NETNS_NAME
    if not config.IS_ROOT or not exists(name):
        return False
    clear(name)
    ip("netns", "del", name)
    say(f"deleted network namespace {name}")
    return True


def describe(keys: Mapping[str, str]) -> str:
    """Where the server runs, for `stack.sh status`."""
    netns = wanted()
    daemon = server(keys, netns)
    if procs.running_pid(daemon) is None:
        return f"(network namespace {netns})" if netns else "(root network namespace)"
    if daemon.netns == "":
        return "in a network namespace deleted under it (`scripts/stack.sh up` moves it)"
    if daemon.netns is None:
        return "in the root network namespace: API, etcd and relay on EVERY interface"
    fwd = procs.running_pid(services.forward(daemon.netns))
    via = f"127.0.0.1:{config.COLONIES_PORT} (forward pid {fwd})" if fwd else "NO forward running"
    return f"in network namespace {daemon.netns}, reached through {via}"
