"""The parent's side of one forker: the process, its control socket and the pool of ready
children it handed over.

One reader thread receives control messages: CHILD (a ready child's pipe ends and pidfd:
into the pool, or straight to a waiting caller), EXIT (a reaped child's status, kept until
its caller takes it, or dropped when the caller already had its RESULT frame), NOFORK and
LOG. Callers never wait on the forker on the happy path: they take a child from the pool
and, after the call, top the pool up with one CREDIT message (so replacing never competes
with the call itself; a caller that finds the pool empty asks at once). Topping up counts
the children asked for and not yet received, so a fork that failed or a spare that died
unused is made up by the next call, and the pool never stays short.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from ..errors import EngineError
from ..policy import Policy
from . import control, isolation

log = logging.getLogger("faas_sandbox.engine")

START_TIMEOUT_S = 60.0
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_PKG_PARENT = str(Path(__file__).resolve().parents[2])
_FORKER_CMD = (
    f"import sys; sys.path.insert(0, {_PKG_PARENT!r}); "
    "from faas_sandbox.engine.forker import main; main()"
)
Report = tuple[int, float, int]  # wait status, cpu_s, max_rss_bytes


class ChildHandle:
    """A ready child: its request pipe (write end), result pipe (read end) and a pidfd."""

    __slots__ = ("serial", "pid", "req_fd", "res_fd", "pidfd")

    def __init__(self, serial: int, pid: int, fds: list[int]) -> None:
        self.serial, self.pid = serial, pid
        self.req_fd, self.res_fd, self.pidfd = fds
        os.set_blocking(self.req_fd, False)
        os.set_blocking(self.res_fd, False)

    def kill(self) -> None:
        if self.pidfd >= 0:
            with suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)

    def close(self) -> None:
        for name in ("req_fd", "res_fd", "pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                with suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)


class Link:
    """One forker process and the children it handed us."""

    def __init__(self, policy: Policy) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _FORKER_CMD],
                stdin=theirs.fileno(),
                env=dict(_CLEAN_ENV),
                cwd="/",
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            self.sock.close()
            raise EngineError(f"cannot start the sandbox forker: {exc}") from None
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self.prefork = policy.prefork
        self.lock = threading.Lock()
        self.ready = threading.Condition(self.lock)  # pool, nofork, dead
        self.exited = threading.Condition(self.lock)  # reports, dead
        self.send_lock = threading.Lock()
        self.pool: collections.deque[ChildHandle] = collections.deque()
        self.inflight: dict[int, ChildHandle] = {}
        self.reports: dict[int, Report] = {}
        self.discard: set[int] = set()
        self.nofork: list[str] = []
        self.waiting = 0  # callers waiting for a child
        self.outstanding = 0  # children asked for (CREDIT) and not yet received
        self.dead: str | None = None
        self.features: dict[str, Any] = {}
        self.hello = threading.Event()
        self.reader = threading.Thread(
            target=self._read_loop, daemon=True, name=f"faas-sandbox-forker-{self.pid}"
        )
        self.reader.start()
        try:
            control.send_json(
                self.sock,
                control.CONFIG,
                {
                    "uid": policy.run_as_uid,
                    "gid": policy.run_as_gid,
                    "seccomp": policy.seccomp,
                    "prefork": policy.prefork,
                },
            )
        except OSError:
            pass  # the reader sees the EOF and the hello wait below fails
        if not self.hello.wait(START_TIMEOUT_S) or self.dead:
            self.close("sandbox forker failed to start")
            raise EngineError(f"sandbox forker failed to start ({self.dead})")
        if "isolation_error" in self.features:
            self.close("sandbox isolation failed")
            raise EngineError(
                f"sandbox isolation does not work here: {self.features['isolation_error']}"
            )
        # -- oslayer (#9): say which OS layers are on; refuse to start without a required one
        layers = self.features.get("layers", {})
        absent = isolation.missing(policy.require, layers)
        if absent:
            self.close("a required isolation layer is missing")
            raise EngineError(
                f"policy {policy.name!r} requires isolation layer(s) "
                f"{', '.join(absent)}, not active here: "
                f"{isolation.describe(layers)}"
            )
        log.log(
            logging.WARNING if isolation.missing(isolation.LAYERS, layers) else logging.INFO,
            "forker %s: %s",
            self.pid,
            isolation.describe(layers),
        )
        self._top_up()

    # -- reader thread ----------------------------------------------------------------------
    def _read_loop(self) -> None:
        reason = "sandbox forker died"
        try:
            while (msg := control.recv(self.sock)) is not None:
                self._dispatch(*msg)
        except (OSError, ValueError) as exc:
            reason = f"sandbox forker died ({exc})"
        finally:
            self._die(reason)
            try:  # its socket is closed, so it is exiting: reap it, leave no zombie
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log.error("forker %s closed its socket but did not exit", self.pid)

    def _dispatch(self, op: int, payload: bytes, fds: list[int]) -> None:
        if op == control.CHILD and len(fds) == 3:
            serial, pid = control.CHILD_MSG.unpack(payload)
            handle = ChildHandle(serial, pid, fds)
            with self.lock:
                self.outstanding = max(0, self.outstanding - 1)
                if self.dead is None:
                    self.pool.append(handle)
                    self.ready.notify()
                    return
            handle.close()
            return
        for fd in fds:
            os.close(fd)
        if op == control.EXIT:
            serial, pid, status, cpu, rss = control.EXIT_MSG.unpack(payload)
            self._on_exit(serial, pid, (status, cpu, rss))
        elif op == control.NOFORK:
            text = payload.decode("utf-8", "replace")
            with self.lock:
                self.outstanding = max(0, self.outstanding - 1)
                if len(self.nofork) < self.waiting:  # a waiting call fails with it
                    self.nofork.append(text)
                    self.ready.notify()
                    return
            log.error("forker %s: %s", self.pid, text)  # a spare: the next call tops up
        elif op == control.LOG and payload:
            level = control.LEVELS[min(payload[0], len(control.LEVELS) - 1)]
            log.log(
                getattr(logging, level),
                "forker %s: %s",
                self.pid,
                payload[1:].decode("utf-8", "replace"),
            )
        elif op == control.HELLO:
            import json  # the forker's own JSON (trusted), once per start

            self.features = dict(json.loads(payload))
            self.hello.set()

    def _on_exit(self, serial: int, pid: int, report: Report) -> None:
        spare = None
        with self.lock:
            if serial in self.discard:
                self.discard.remove(serial)
                return
            for handle in self.pool:
                if handle.serial == serial:
                    spare = handle
                    break
            if spare is None:
                self.reports[serial] = report
                self.exited.notify_all()
                return
            self.pool.remove(spare)
        spare.close()  # the next call's release tops the pool up (at most one fork per call)
        log.error("spare child %s died before use (wait status %s)", pid, report[0])

    def _die(self, reason: str) -> None:
        with self.lock:
            if self.dead is None:
                self.dead = reason
            pool, self.pool = list(self.pool), collections.deque()
            self.ready.notify_all()
            self.exited.notify_all()
        for handle in pool:
            handle.close()
        self.hello.set()

    # -- callers ----------------------------------------------------------------------------
    def _top_up(self) -> None:
        """Ask for what the pool lacks: ``prefork`` spares plus one per waiting call, minus
        the children already asked for."""
        with self.lock:
            need = self.prefork + self.waiting - len(self.pool) - self.outstanding
            if need <= 0 or self.dead is not None:
                return
            self.outstanding += need
        try:
            with self.send_lock:
                control.send(self.sock, control.CREDIT, control.CREDIT_MSG.pack(need))
        except OSError:
            pass  # the reader sees the forker go

    def take(self, timeout: float) -> ChildHandle | str:
        """A ready child, or why there is none. Taking from the pool sends nothing (the
        replacement is asked for after the call); an empty pool asks at once and waits."""
        with self.lock:
            if self.dead is not None:
                return self.dead
            handle = self.pool.popleft() if self.pool else None
            if handle is None:
                self.waiting += 1
        if handle is None:
            self._top_up()
            with self.lock:
                end = time.monotonic() + timeout
                while not self.pool and not self.nofork and self.dead is None:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    self.ready.wait(left)
                self.waiting -= 1
                if self.pool:
                    handle = self.pool.popleft()
                elif self.nofork:
                    return self.nofork.pop(0)
                else:
                    return self.dead or f"no sandbox child became ready within {timeout:g} s"
        with self.lock:
            self.inflight[handle.serial] = handle
        return handle

    def release(self, handle: ChildHandle, need_report: bool) -> None:
        """The call is over; its fds are closed. Without ``need_report`` the EXIT is dropped.
        Then the pool is topped up (off the call's critical path)."""
        handle.close()
        with self.lock:
            self.inflight.pop(handle.serial, None)
            if not need_report and self.reports.pop(handle.serial, None) is None:
                self.discard.add(handle.serial)
        self._top_up()

    def report(self, serial: int, timeout: float) -> Report | None:
        """The child's wait status and usage from the forker (None: not within timeout)."""
        end = time.monotonic() + timeout
        with self.lock:
            while serial not in self.reports and self.dead is None:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.exited.wait(left)
            return self.reports.pop(serial, None)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "spares": [h.pid for h in self.pool],
                "running": [h.pid for h in self.inflight.values()],
                "forker_pid": self.pid,
            }

    def fds(self) -> set[int]:
        """Every fd this link holds (tests check that nothing else leaks)."""
        with self.lock:
            handles = list(self.pool) + list(self.inflight.values())
        held = {self.sock.fileno()} if self.sock.fileno() >= 0 else set()
        for h in handles:
            held |= {fd for fd in (h.req_fd, h.res_fd, h.pidfd) if fd >= 0}
        return held

    def close(self, reason: str) -> None:
        """Stop the forker (it kills its children) and fail whatever is still waiting."""
        with self.lock:
            if self.dead is None:
                self.dead = reason
        with suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if threading.current_thread() is not self.reader:
            self.reader.join(timeout=10)
        self._die(reason)
        if not self.reader.is_alive():
            self.sock.close()
