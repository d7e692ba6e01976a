"""The public engine: ``Sandbox(policy).call(source, function, args, kwargs, maxexectime)``.

A :class:`Sandbox` owns one forker process (see :mod:`faas_sandbox.forker`) and multiplexes
any number of concurrent calls over its pipes: each call gets a request id and a waiter, a
send lock serialises writes, and one reader thread resolves waiters as answers arrive. The
forker is started as a fresh interpreter with a clean environment (PATH and LANG only), so
it never held the caller's Colonies keys.

If the forker dies, every pending call ends as ``crash`` ("sandbox forker died") and the next
call starts a new one. A forker that stays silent for ``wall_seconds + ANSWER_GRACE_S`` is
killed the same way. Closing the sandbox (or the caller exiting) closes the forker's stdin;
the forker then kills its children and exits, so no call outlives its caller.

Usage errors of the API itself (not a str source, calling a closed sandbox, a forker that
cannot start or isolate) raise :class:`~faas_sandbox.errors.EngineError` or TypeError; every
failure of the *call* is an :class:`~faas_sandbox.outcome.Outcome`.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from . import wire
from ..errors import EngineError
from . import isolation
from .outcome import ErrorKind, Outcome, Usage
from ..policy import Limits, Policy
from .process import admit, result_cap

log = logging.getLogger(__name__)

ANSWER_GRACE_S = 10.0  # beyond the wall limit, before a silent forker is declared hung
START_TIMEOUT_S = 60.0
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_PKG_PARENT = str(Path(__file__).resolve().parents[2])
_FORKER_CMD = (f"import sys; sys.path.insert(0, {_PKG_PARENT!r}); "
               "from faas_sandbox.engine.forker import main; main()")
_LOUD_KINDS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CPU, ErrorKind.MEMORY, ErrorKind.CRASH})


@functools.lru_cache(maxsize=1024)
def _wire_limits(limits: Limits) -> dict[str, Any]:
    return {f.name: getattr(limits, f.name) for f in fields(Limits)}


@functools.lru_cache(maxsize=256)
def _wire_modules(modules: frozenset[str]) -> list[str]:
    return sorted(modules)


def _crash(message: str) -> Outcome:
    return Outcome.failure(ErrorKind.CRASH, message)


def _to_outcome(msg: Mapping[str, Any]) -> Outcome:
    usage = Usage(**msg["usage"])
    if msg["ok"]:
        return Outcome(True, msg["value"], None, "", msg["stdout"], usage)
    error = msg["error"]
    return Outcome.failure(ErrorKind(error["kind"]), error["message"], msg["stdout"], usage)


class _Waiter:
    __slots__ = ("event", "msg")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.msg: Mapping[str, Any] | None = None


class _Link:
    """One forker process and the plumbing to talk to it."""

    def __init__(self, policy: Policy, response_cap: int) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _FORKER_CMD], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=dict(_CLEAN_ENV), cwd="/", close_fds=True,
                start_new_session=True, bufsize=0)
        except OSError as exc:
            raise EngineError(f"cannot start the sandbox forker: {exc}") from None
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.pid = self.proc.pid
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.response_cap = response_cap
        self.pending: dict[int, _Waiter] = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()  # also guards closing fd_in (no write after close)
        self.stdin_closed = False
        self.dead: str | None = None
        self.features: dict[str, Any] = {}
        self.hello = threading.Event()
        self.reader = threading.Thread(target=self._read_loop, daemon=True,
                                       name=f"faas-sandbox-reader-{self.pid}")
        self.reader.start()
        try:
            wire.write_frame(self.fd_in, {"op": "config", "uid": policy.run_as_uid,
                                          "gid": policy.run_as_gid, "seccomp": policy.seccomp,
                                          "prefork": policy.prefork})
        except OSError:
            pass  # the reader sees the EOF and the hello wait below fails
        if not self.hello.wait(START_TIMEOUT_S) or self.dead:
            self.close("sandbox forker failed to start")
            raise EngineError(f"sandbox forker failed to start ({self.dead})")
        if "isolation_error" in self.features:
            self.close("sandbox isolation failed")
            raise EngineError(f"sandbox isolation does not work here: "
                              f"{self.features['isolation_error']}")
        # -- oslayer (#9): say which OS layers are on; refuse to start without a required one
        layers = self.features.get("layers", {})
        absent = isolation.missing(policy.require, layers)
        if absent:
            self.close("a required isolation layer is missing")
            raise EngineError(f"policy {policy.name!r} requires isolation layer(s) "
                              f"{', '.join(absent)}, not active here: "
                              f"{isolation.describe(layers)}")
        log.log(logging.WARNING if isolation.missing(isolation.LAYERS, layers) else logging.INFO,
                "forker %s: %s", self.pid, isolation.describe(layers))

    def _read_loop(self) -> None:
        reason = "sandbox forker died"
        buf = wire.FrameBuffer(self.response_cap)
        try:
            while data := os.read(self.fd_out, 1 << 20):
                for body in buf.feed(data):
                    self._dispatch(wire.loads(body))
        except (OSError, wire.WireError) as exc:
            reason = f"sandbox forker died (broken protocol: {exc})"
            log.error("forker %s: %s; killing it", self.pid, exc)
            self.proc.kill()
        finally:
            self._die(reason)
            try:  # its stdout is closed, so it is exiting: reap it, leave no zombie
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                log.error("forker %s closed its pipe but did not exit", self.pid)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        if "id" in msg:
            with self.lock:
                waiter = self.pending.pop(msg["id"], None)
            if waiter is not None:
                waiter.msg = msg
                waiter.event.set()
        elif msg.get("op") == "log":
            level = getattr(logging, str(msg.get("level")), logging.WARNING)
            log.log(level, "forker %s: %s", self.pid, msg.get("message"))
        elif msg.get("op") == "hello":
            self.features = dict(msg.get("features") or {})
            self.hello.set()

    def _die(self, reason: str) -> None:
        """Fail every pending call; the next call starts a new forker."""
        with self.lock:
            if self.dead is None:
                self.dead = reason
            pending, self.pending = self.pending, {}
        for waiter in pending.values():
            waiter.event.set()  # msg None: the call reads self.dead
        self.hello.set()

    def request(self, msg: dict[str, Any], timeout: float) -> Mapping[str, Any] | Outcome:
        waiter = _Waiter()
        with self.lock:
            if self.dead is not None:
                return _crash(self.dead)
            call_id = msg["id"] = next(self.ids)
            self.pending[call_id] = waiter
        data = wire.encode(msg)
        try:
            with self.send_lock:
                if self.stdin_closed:
                    raise BrokenPipeError
                wire.write_all(self.fd_in, data)
        except OSError:
            self.close("sandbox forker died")
        if not waiter.event.wait(timeout):
            log.error("forker %s did not answer call %s within %.1f s; restarting it",
                      self.pid, call_id, timeout)
            self.close(f"sandbox forker did not answer within {timeout:g} s", kill=True)
        if waiter.msg is None:
            return _crash(self.dead or "sandbox forker died")
        return waiter.msg

    def close(self, reason: str, kill: bool = False) -> None:
        """Stop the forker (it kills its children) and fail whatever is still pending."""
        with self.lock:
            if self.dead is None:
                self.dead = reason
        if kill:
            self.proc.kill()  # its children follow (PR_SET_PDEATHSIG); unblocks any writer
        with self.send_lock:  # never close the fd under a writer (the number could be reused)
            if not self.stdin_closed:
                self.stdin_closed = True
                try:
                    self.proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if threading.current_thread() is not self.reader:
            self.reader.join(timeout=10)
        self._die(reason)
        if not self.reader.is_alive():  # same rule for the reader's fd
            self.proc.stdout.close()  # type: ignore[union-attr]


class Sandbox:
    """Runs untrusted functions, each call in a fresh, limited, credential-free process.

    Thread-safe: any number of threads may call :meth:`call` at once.
    """

    def __init__(self, policy: Policy | None = None) -> None:
        self.policy = policy if policy is not None else Policy()
        self._lock = threading.Lock()
        self._link: _Link | None = None
        self._closed = False
        # Policy is frozen: its per-call view depends only on (function, maxexectime), and
        # computing it (two validated dataclass copies) costs ~60 us, a fifth of a call.
        self._for_call = functools.lru_cache(maxsize=1024)(self.policy.for_call)
        caps = [self.policy.limits] + [self.policy.for_function(name).limits
                                       for name in self.policy.functions]
        self._response_cap = 2 * max(result_cap(c.max_result_bytes, c.max_stdout_bytes)
                                     for c in caps) + (1 << 20)

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the forker now rather than on the first call."""
        self._current()

    def close(self) -> None:
        """Stop the forker; calls still running end as ``crash``. Idempotent."""
        with self._lock:
            self._closed = True
            link, self._link = self._link, None
        if link is not None:
            link.close("sandbox closed while the call was running")

    @property
    def features(self) -> dict[str, Any]:
        """What the forker could set up: seccomp, privilege drop, pidfd (starts it)."""
        return dict(self._current().features)

    def _current(self) -> _Link:
        with self._lock:
            if self._closed:
                raise EngineError("the Sandbox is closed")
            if self._link is None or self._link.dead is not None:
                if self._link is not None:
                    log.warning("sandbox forker %s is gone (%s); starting a new one",
                                self._link.pid, self._link.dead)
                    self._link.close(self._link.dead or "sandbox forker died")
                self._link = _Link(self.policy, self._response_cap)
            return self._link

    def call(self, source: str, function: str, args: Iterable[Any] = (),
             kwargs: Mapping[str, Any] | None = None,
             maxexectime: float | None = None) -> Outcome:
        """Run ``function(*args, **kwargs)`` defined by ``source``; never raises for user code."""
        if not isinstance(source, str) or not isinstance(function, str):
            raise TypeError("source and function must be str")
        policy = self._for_call(function, maxexectime)
        limits = policy.limits
        try:
            args_text = json.dumps([list(args), dict(kwargs or {})], ensure_ascii=False,
                                   allow_nan=False, separators=(",", ":"))
            args_bytes = len(args_text.encode("utf-8", "surrogatepass"))
        except (TypeError, ValueError, RecursionError) as exc:
            return Outcome.failure(ErrorKind.RUNTIME,
                                   f"ValueError: arguments are not JSON-serialisable: {exc}")
        refusal = admit(len(source.encode("utf-8", "surrogatepass")), args_bytes,
                        limits.max_source_bytes, limits.max_args_bytes)
        if refusal is not None:
            return refusal
        msg = {"op": "call", "source": source, "function": function, "args": args_text,
               "limits": _wire_limits(limits), "modules": _wire_modules(policy.allowed_modules)}
        outcome = self._send(msg, limits.wall_seconds)
        if not outcome.ok and outcome.error_kind in _LOUD_KINDS:
            log.warning("call %s: %s", function, outcome.reason)
        return outcome

    def _send(self, msg: dict[str, Any], wall_seconds: float) -> Outcome:
        answer = self._current().request(msg, wall_seconds + ANSWER_GRACE_S)
        if isinstance(answer, Outcome):
            return answer
        log.debug("call %s: pid %s %s in %.4fs", msg["id"], answer.get("pid"),
                  "ok" if answer["ok"] else answer["error"]["kind"], answer["usage"]["wall_s"])
        return _to_outcome(answer)

    # -- private hooks for tests and the benchmark ------------------------------------------
    def _bare_call(self) -> Outcome:
        """The floor: fork + pipe + wait4 from the same forker, no sandbox work."""
        return self._send({"op": "bare"}, 10.0)

    def _probe(self, name: str, limits: Limits | None = None,
               params: Mapping[str, Any] | None = None) -> Outcome:
        """Run a trusted probe (probes.PROBES) in a fully isolated child, under ``limits``;
        ``params`` reach it as ``ctx["args"]``."""
        limits = limits or self.policy.limits
        return self._send({"op": "call", "probe": name, "limits": _wire_limits(limits),
                           "args": json.dumps([[], dict(params or {})])}, limits.wall_seconds)

    def _stats(self) -> dict[str, Any]:
        """The forker's spares, running children and cache size."""
        answer = self._current().request({"op": "stats"}, ANSWER_GRACE_S)
        if isinstance(answer, Outcome):
            raise EngineError(answer.message)
        return dict(answer)

    @property
    def _forker_pid(self) -> int:
        return self._current().pid
