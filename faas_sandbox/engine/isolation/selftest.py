"""``faas-sandbox selftest``: run every attacker probe (:mod:`.attacks`) in real sandbox
children and say which were denied.

The Sandbox is the one a call gets (same policy, forker, spares, lockdown). Before the
probes, a function whose source carries a random marker is deployed and called through it,
so ``other_function_code_in_memory`` has something to look for. The selftest listens on a
loopback TCP port and an abstract unix socket and gives the probes file names to create, then
checks from outside that no connection arrived and no file appeared: a probe is denied only
if it says so *and* the outside agrees. A probe that does not come back with a report (its
child crashed, or exec replaced it) counts as not denied.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...policy import Policy
from ..sandbox import Sandbox
from . import attacks

PROBE_NAMES = tuple(attacks.PROBES)


def _forker_map(pid: int) -> tuple[list[list[int]], list[str]]:
    """The forker's writable ranges (a child's memory is a copy of them), and any mapping a
    child would inherit that is executable and writable, or executable and not a file."""
    ranges, exec_data = [], []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            fields = line.split()
            span, perms = fields[0], fields[1]
            name = fields[5] if len(fields) > 5 else ""
            if (
                "x" in perms
                and ("w" in perms or not name.startswith("/"))
                and name not in ("[vdso]", "[vsyscall]")
            ):
                exec_data.append(line.strip())
            if perms[:2] != "rw" or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            ranges.append([start, end])
    return ranges, exec_data


class _Listeners:
    """A loopback TCP port and an abstract unix socket that no probe may reach."""

    def __init__(self) -> None:
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen(8)
        self.tcp.setblocking(False)
        self.port = self.tcp.getsockname()[1]
        self.abstract_name = f"faas-selftest-{secrets.token_hex(8)}"
        self.unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.unix.bind("\0" + self.abstract_name)
        self.unix.listen(8)
        self.unix.setblocking(False)

    def reached(self, sock: socket.socket) -> bool:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return False
        conn.close()
        return True

    def close(self) -> None:
        self.tcp.close()
        self.unix.close()


def _created(paths: list[str]) -> list[str]:
    found = []
    for base in paths:
        for path in (base, base + ".d", base + ".p", base + ".l"):
            if os.path.lexists(path):
                found.append(path)
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
    return found


def run(policy: Policy) -> dict[str, Any]:
    """Every probe's verdict and the layers the forker reported (see the CLI for the shape)."""
    tag = secrets.token_hex(8)
    marker = f"faasselftestmarker{secrets.token_hex(12)}"
    limits = replace(
        policy.limits,
        wall_seconds=max(policy.limits.wall_seconds, 5.0),
        cpu_seconds=max(policy.limits.cpu_seconds, 2),
    )
    tmp_paths = [f"/tmp/faas-selftest-{tag}", f"/dev/shm/faas-selftest-{tag}"]
    listeners = _Listeners()
    results: list[dict[str, Any]] = []
    try:
        with Sandbox(policy) as sb:
            layers = dict(sb.features.get("layers", {}))
            forker_pid = sb._forker_pid
            deployed = sb.call(f"def secret():\n    return {marker!r}\n", "secret")
            params: dict[str, Any] = {
                "forker_pid": forker_pid,
                "port": listeners.port,
                "abstract_name": listeners.abstract_name,
                "tmp_paths": tmp_paths,
                "cwd_name": f"faas-selftest-{tag}",
                "marker_hex": marker.encode().hex(),
                "package_file": str(Path(attacks.__file__).resolve().parents[2] / "__init__.py"),
            }
            params["ranges"], exec_data = _forker_map(forker_pid)
            for name in PROBE_NAMES:
                out = sb._probe(f"attack:{name}", limits, params)
                if out.ok and isinstance(out.value, dict):
                    entry = {
                        "name": name,
                        "denied": bool(out.value["denied"]),
                        "detail": str(out.value["detail"]),
                    }
                else:
                    entry = {
                        "name": name,
                        "denied": False,
                        "detail": f"probe ended without a report: {out.reason}",
                    }
                results.append(entry)
            if exec_data:  # a child would inherit memory it can write and run
                _by_name(results, "map_executable_memory").update(
                    denied=False,
                    detail=f"the forker has writable or anonymous executable "
                    f"mappings: {'; '.join(exec_data)}",
                )
            if not deployed.ok or deployed.value != marker:
                _by_name(results, "other_function_code_in_memory").update(
                    denied=False, detail=f"could not deploy the marker function: {deployed.reason}"
                )
        _outside_checks(results, listeners, tmp_paths)
    finally:
        listeners.close()
    return {"probes": results, "layers": layers, "euid": os.geteuid(), "policy": policy.name}


def _by_name(results: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(entry for entry in results if entry["name"] == name)


def _outside_checks(
    results: list[dict[str, Any]], listeners: _Listeners, tmp_paths: list[str]
) -> None:
    for name, sock in (("connect_loopback", listeners.tcp), ("socket_unix", listeners.unix)):
        if listeners.reached(sock):
            _by_name(results, name).update(
                denied=False, detail="the selftest's listener accepted a connection from the probe"
            )
    created = _created(tmp_paths)
    if created:
        _by_name(results, "create_file_tmp").update(
            denied=False, detail=f"created (and removed by the selftest): {', '.join(created)}"
        )


def passed(report: dict[str, Any]) -> bool:
    return bool(report["probes"]) and all(p["denied"] for p in report["probes"])
