"""Separate network hosts on one machine: network namespaces on a bridge of our own, and
Toxiproxy between them and the Colonies nodes for WAN latency (this kernel has no netem).

Root only. Everything created here carries the ``prefix`` in its name (namespaces
``<prefix>-<host>``, bridge ``<prefix>br``, host-side veth ends ``<prefix>-<host>``) and is
removed by :meth:`Net.teardown`, which also clears leftovers of an earlier run of the same
prefix. The subnet is private to this machine (default 10.231.0.0/24: the bridge is .1).

    net = Net()
    net.add("ex1")                                   # namespace faas-ex1 at 10.231.0.11
    net.popen("ex1", ["faas-sandbox", "executor"])   # runs inside it
    net.cut("ex1"); net.restore("ex1")               # link down / up
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from .procs import StackError


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise StackError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass
class Net:
    prefix: str = "faas"
    subnet: str = "10.231.0"
    hosts: dict[str, str] = field(default_factory=dict)  # name -> address

    @property
    def bridge(self) -> str:
        return f"{self.prefix}br"

    @property
    def gateway(self) -> str:
        """The bridge's address: where the namespaces reach services of the root namespace."""
        return f"{self.subnet}.1"

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def up(self) -> None:
        self.teardown()  # leftovers of an interrupted run
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> str:
        """A namespace with one interface on the bridge; returns its address."""
        address = f"{self.subnet}.{11 + len(self.hosts)}"
        ns, outer = self.ns(name), self.ns(name)[:15]
        ip("netns", "add", ns)
        ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", outer, "master", self.bridge)
        ip("link", "set", outer, "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[name] = address
        return address

    def popen(self, name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["ip", "netns", "exec", self.ns(name), *argv], **kwargs)

    def cut(self, name: str) -> None:
        """The host's link goes down: its packets are dropped, nobody is told."""
        ip("link", "set", self.ns(name)[:15], "down")

    def restore(self, name: str) -> None:
        ip("link", "set", self.ns(name)[:15], "up")

    def teardown(self) -> None:
        listed = ip("netns", "list", check=False).stdout.split("\n")
        for line in listed:
            ns = line.split(" ")[0]
            if ns.startswith(f"{self.prefix}-"):
                ip("netns", "del", ns, check=False)  # removes its veth pair too
        # A namespace outlives `netns del` while a process still runs in it, and so does its
        # veth pair: delete our ends explicitly.
        for line in ip("-o", "link", "show", check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith(f"{self.prefix}-"):
                ip("link", "del", name, check=False)
        ip("link", "del", self.bridge, check=False)
        self.hosts.clear()


class Toxiproxy:
    """The Toxiproxy HTTP API (v2.5.0): proxies and latency toxics."""

    def __init__(self, api: str) -> None:
        self.api = api.rstrip("/")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.api + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            text = reply.read()
        try:
            return json.loads(text) if text else None
        except ValueError:
            return text.decode(errors="replace")  # /version answers plain text

    def wait(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/version")
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise StackError(f"toxiproxy API {self.api} not answering") from None
                time.sleep(0.1)

    def proxy(self, name: str, listen: str, upstream: str) -> None:
        self._call(
            "POST",
            "/proxies",
            {"name": name, "listen": listen, "upstream": upstream, "enabled": True},
        )

    def latency(self, name: str, one_way_ms: int) -> None:
        """Delay both directions of proxy ``name`` by ``one_way_ms`` (0: no delay)."""
        for stream in ("upstream", "downstream"):
            toxic = f"lat-{stream}"
            with suppress(urllib.error.HTTPError):
                self._call("DELETE", f"/proxies/{name}/toxics/{toxic}")
            if one_way_ms > 0:
                self._call(
                    "POST",
                    f"/proxies/{name}/toxics",
                    {
                        "name": toxic,
                        "type": "latency",
                        "stream": stream,
                        "toxicity": 1.0,
                        "attributes": {"latency": one_way_ms, "jitter": 0},
                    },
                )
