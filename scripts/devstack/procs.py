"""Background services: start detached with a pid file and a log, check, wait, stop.

Only processes whose pid is in one of our pid files, and whose /proc cmdline still shows the
expected program, are ever signalled (never by name). Each service runs in its own session,
so on a stuck stop we SIGKILL that process group: the service and its own children only.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import config, setns

# Environment variables that may differ between callers without changing a service's config.
AMBIENT = ("PATH", "HOME", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR")


class StackError(Exception):
    """Raised when a step of the stack cannot be completed; the message is for humans."""


def say(message: str) -> None:
    print(f"[stack {time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass(frozen=True)
class Daemon:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    healthy: Callable[[], bool]
    ports: Sequence[int] = ()
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    cwd: str = "/"
    start_timeout: float = 60.0
    stop_timeout: float = 20.0
    marker: str = ""  # must appear in /proc/<pid>/cmdline; default: the program path, argv[0]
    # Placement: run inside this named network namespace (`ip netns exec`, which execs: the pid
    # is the program's), with ``netns_env`` on top of ``env``; ``ports`` are checked in there.
    # Not part of the fingerprint: ensure() checks where the process runs from /proc instead.
    netns: str | None = None
    netns_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def pid_file(self) -> Path:
        return config.STATE_DIR / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return config.LOG_DIR / f"{self.name}.log"

    @property
    def config_file(self) -> Path:
        return config.STATE_DIR / f"{self.name}.config"

    @property
    def cmd_marker(self) -> str:
        return self.marker or self.argv[0]

    def launch(self) -> tuple[list[str], dict[str, str]]:
        """The argv and environment to start it with, placement included."""
        if self.netns is None:
            return list(self.argv), dict(self.env)
        return ["ip", "netns", "exec", self.netns, *self.argv], {**self.env, **self.netns_env}

    def fingerprint(self) -> str:
        """Hash of what configures the service (argv, non-ambient env, user); no secrets kept."""
        env = sorted((k, v) for k, v in self.env.items() if k not in AMBIENT)
        material = json.dumps([list(self.argv), env, self.user])
        return hashlib.sha256(material.encode()).hexdigest()


def _cmdline(pid: int) -> str | None:
    """The process's cmdline, or None when it does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return None
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return None


def running_pid(daemon: Daemon) -> int | None:
    """Our pid for this daemon when it is alive and still the program we started."""
    try:
        pid = int(daemon.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if cmdline is None or daemon.cmd_marker not in cmdline:
        return None
    return pid


def port_open(port: int, host: str = config.HOST, netns: str | None = None) -> bool:
    """Whether something accepts connections on host:port (inside ``netns`` when given)."""
    try:
        with setns.tcp_socket(netns) as sock:
            sock.settimeout(0.5)
            sock.connect((host, port))
            return True
    except (OSError, ValueError):
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def user_credentials(user: str | None) -> dict[str, Any]:
    """Popen/run keyword arguments that drop to ``user`` (nothing when None)."""
    if user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start(daemon: Daemon) -> int:
    """Start the daemon unless it already runs; wait until healthy. Returns its pid."""
    pid = running_pid(daemon)
    if pid is not None:
        return pid
    daemon.pid_file.unlink(missing_ok=True)
    busy = _busy_ports(daemon, grace=5.0)  # e.g. a process that is still exiting
    if busy:
        raise StackError(
            f"{daemon.name}: port(s) {busy} already in use by a process that stack.sh did not "
            f"start (see `ss -ltnp`); stop it or free the port"
        )
    say(f"starting {daemon.name} (log: {daemon.log_file})")
    creds = user_credentials(daemon.user)
    argv, env = daemon.launch()
    with open(daemon.log_file, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start {daemon.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=daemon.cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **creds,
        )
    daemon.pid_file.write_text(f"{proc.pid}\n")
    daemon.config_file.write_text(daemon.fingerprint() + "\n")
    started = time.monotonic()
    while True:
        if proc.poll() is not None:
            daemon.pid_file.unlink(missing_ok=True)
            raise StackError(
                f"{daemon.name} exited with status {proc.returncode} while starting; last log "
                f"lines of {daemon.log_file}:\n{tail(daemon.log_file)}"
            )
        if daemon.healthy():
            say(f"{daemon.name} is up (pid {proc.pid}, {time.monotonic() - started:.1f}s)")
            return proc.pid
        if time.monotonic() - started > daemon.start_timeout:
            stop(daemon)
            raise StackError(
                f"{daemon.name} not healthy after {daemon.start_timeout:.0f}s; last log lines "
                f"of {daemon.log_file}:\n{tail(daemon.log_file)}"
            )
        time.sleep(0.2)


def ensure(daemon: Daemon) -> int:
    """Like start(), but restart a running daemon whose configuration changed."""
    pid = running_pid(daemon)
    if pid is None:
        return start(daemon)
    try:
        same = daemon.config_file.read_text().strip() == daemon.fingerprint()
    except OSError:
        same = False
    if not same:
        say(f"{daemon.name}: configuration changed since it started; restarting it")
        stop(daemon)
        return start(daemon)
    if daemon.netns is not None and not setns.runs_in(pid, daemon.netns):
        say(f"{daemon.name}: restarting it in network namespace {daemon.netns}")
        old = placement(pid)
        gone = old is None and not setns.runs_in(pid, None)  # its namespace was deleted since
        stop(replace(daemon, netns=old, ports=() if gone else daemon.ports))
        return start(daemon)
    deadline = time.monotonic() + daemon.start_timeout
    while not daemon.healthy():
        if running_pid(daemon) is None or time.monotonic() > deadline:
            raise StackError(
                f"{daemon.name} (pid {pid}) runs but is not healthy; last log "
                f"lines of {daemon.log_file}:\n{tail(daemon.log_file)}"
            )
        time.sleep(0.2)
    return pid


def stop(daemon: Daemon) -> bool:
    """Stop the daemon if we started it and it runs. Returns True when something was stopped."""
    pid = running_pid(daemon)
    if pid is None:
        daemon.pid_file.unlink(missing_ok=True)
        return False
    say(f"stopping {daemon.name} (pid {pid})")
    with suppress(ProcessLookupError):
        os.kill(pid, daemon.stop_signal)
    deadline = time.monotonic() + daemon.stop_timeout
    while _cmdline(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    if _cmdline(pid) is not None:
        say(f"{daemon.name} ignored the stop signal for {daemon.stop_timeout:.0f}s; SIGKILL")
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _cmdline(pid) is not None:
            if time.monotonic() > deadline:
                raise StackError(f"{daemon.name} (pid {pid}) survived SIGKILL for 10s")
            time.sleep(0.1)
    # The leader thread can be a zombie while other threads still hold the sockets.
    _busy_ports(daemon, grace=10.0)
    daemon.pid_file.unlink(missing_ok=True)
    return True


def placement(pid: int) -> str | None:
    """The named network namespace process ``pid`` runs in (None: ours, or an unnamed one)."""
    with suppress(OSError):
        for entry in setns.NETNS_DIR.iterdir():
            if setns.runs_in(pid, entry.name):
                return entry.name
    return None


def _busy_ports(daemon: Daemon, grace: float) -> list[int]:
    """The daemon's ports that still accept connections after waiting up to ``grace`` s."""
    deadline = time.monotonic() + grace
    while True:
        busy = [port for port in daemon.ports if port_open(port, netns=daemon.netns)]
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.1)


def run_logged(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    what: str,
    timeout: float = 3600,
    heartbeat: float = 30,
) -> None:
    """Run a long command with its output in a log, printing a progress line now and then."""
    with open(log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = time.monotonic()
        next_beat = started + heartbeat
        while proc.poll() is None:
            now = time.monotonic()
            if now - started > timeout:
                proc.kill()
                proc.wait()
                raise StackError(f"{what}: timed out after {timeout:.0f}s (log: {log_path})")
            if now >= next_beat:
                say(f"... {what}: still running ({now - started:.0f}s)")
                next_beat = now + heartbeat
            time.sleep(0.5)
    if proc.returncode != 0:
        raise StackError(
            f"{what} failed (exit {proc.returncode}); last lines of {log_path}:\n{tail(log_path)}"
        )


def fail(message: str) -> None:
    print(f"stack.sh: error: {message}", file=sys.stderr, flush=True)
