"""The public engine: ``Sandbox(policy).call(source, function, args, kwargs, maxexectime)``.

A :class:`Sandbox` owns one forker (see :mod:`faas_sandbox.engine.forker`), started as a
fresh interpreter with a clean environment (PATH and LANG only), so it never held the
caller's Colonies keys. The forker keeps ``policy.prefork`` generic children forked, isolated
and warm, and hands each to this process (:mod:`~faas_sandbox.engine.link`). A call takes
one, writes one request into it and reads one answer (:mod:`~faas_sandbox.engine.call`), all
in the calling thread; the wall deadline is enforced here.

This process never parses, compiles, unmarshals or JSON-decodes what a function or its
source controls: the child compiles (under the call's limits), sends its marshalled code
before running anything, and that code is cached here as opaque bytes (bounded in bytes:
:class:`~faas_sandbox.engine.codecache.CodeCache`) for the next child to unmarshal. A failed
compile is cached as refused. The result stays JSON bytes (``Outcome.value_json``) unless
the caller reads ``Outcome.value``.

If the forker dies, every call waiting on it ends as ``crash`` ("sandbox forker died") and
the next call starts a new one. Closing the sandbox stops the forker; it kills its children.

Usage errors of the API itself (not a str source, calling a closed sandbox, a forker that
cannot start or isolate) raise :class:`~faas_sandbox.errors.EngineError` or TypeError; every
failure of the *call* is an :class:`~faas_sandbox.engine.outcome.Outcome`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

from .. import sizes
from ..errors import EngineError
from ..kinds import ErrorKind
from ..policy import Limits, Policy
from . import call, codecache, wire
from .link import Link
from .outcome import Outcome, Usage
from .verdict import Seen, admit, classify, refusal

log = logging.getLogger("faas_sandbox.engine")

REPORT_WAIT_S = 5.0  # for the forker's word on a child that died without a RESULT
TIMEOUT_REPORT_WAIT_S = 0.5  # after our own kill, only for the usage figures
TAKE_GRACE_S = 2.0  # a call waits at most its wall limit + this for a ready child
_LOUD_KINDS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CPU, ErrorKind.MEMORY, ErrorKind.CRASH})
_NO_ARGS = b"[[],{}]"
_LIVE: weakref.WeakSet[Sandbox] = weakref.WeakSet()


def held_fds() -> set[int]:
    """Every fd the live Sandboxes of this process hold (forker sockets, ready children):
    for tests that check nothing else leaks."""
    return set().union(*(sb._held_fds() for sb in list(_LIVE)))


@functools.lru_cache(maxsize=1024)
def _wire_limits(limits: Limits) -> bytes:
    return wire.pack_limits(limits)


@functools.lru_cache(maxsize=256)
def _wire_modules(modules: frozenset[str]) -> int:
    return wire.module_mask(modules)


class Sandbox:
    """Runs untrusted functions, each call in a fresh, limited, credential-free process.

    Thread-safe: any number of threads may call :meth:`call` at once.
    """

    def __init__(
        self, policy: Policy | None = None, *, code_cache_bytes: int = codecache.DEFAULT_BYTES
    ) -> None:
        self.policy = policy if policy is not None else Policy()
        self._lock = threading.Lock()
        self._link: Link | None = None
        self._closed = False
        self._cache = codecache.CodeCache(code_cache_bytes)
        # Policy is frozen: its per-call view depends only on (function, maxexectime).
        self._for_call = functools.lru_cache(maxsize=1024)(self.policy.for_call)
        _LIVE.add(self)

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

    def _current(self) -> Link:
        with self._lock:
            if self._closed:
                raise EngineError("the Sandbox is closed")
            if self._link is None or self._link.dead is not None:
                if self._link is not None:
                    log.warning(
                        "sandbox forker %s is gone (%s); starting a new one",
                        self._link.pid,
                        self._link.dead,
                    )
                    self._link.close(self._link.dead or "sandbox forker died")
                self._link = Link(self.policy)
            return self._link

    def call(
        self,
        source: str,
        function: str,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        maxexectime: float | None = None,
        *,
        args_json: bytes | None = None,
        element: bool = False,
    ) -> Outcome:
        """Run ``function(*args, **kwargs)`` defined by ``source``; never raises for user code.

        ``args_json``, when given, replaces ``args``/``kwargs``: the caller's JSON text of
        ``[args, kwargs]`` as bytes, passed to the child untouched (it decodes it).
        ``element``: the child encodes the result as its Colonies output element
        (``Outcome.element``, docs/protocol.md), which this process checks but never decodes.
        """
        if not isinstance(source, str) or not isinstance(function, str):
            raise TypeError("source and function must be str")
        fname = function.encode("utf-8", "surrogatepass")
        if len(fname) > wire.MAX_FUNCTION_BYTES:  # before it can become a cache key
            return Outcome.failure(
                ErrorKind.RUNTIME,
                f"NameError: function name is over {wire.MAX_FUNCTION_BYTES} bytes",
            )
        policy = self._for_call(function, maxexectime)
        limits = policy.limits
        if args_json is not None:
            if not isinstance(args_json, (bytes, bytearray)):
                raise TypeError("args_json must be bytes (the JSON text of [args, kwargs])")
            args_json = bytes(args_json)
        else:
            try:
                args_json = sizes.args_json(args, kwargs)
            except (TypeError, ValueError, RecursionError) as exc:
                return Outcome.failure(
                    ErrorKind.RUNTIME, f"ValueError: arguments are not JSON-serialisable: {exc}"
                )
        entry = self._cache.get(source)
        if entry is None:
            body = source.encode("utf-8", "surrogatepass")
            size, kind = len(body), wire.SOURCE
        elif entry.refusal is not None and entry.refusal.applies(limits):
            return Outcome.failure(ErrorKind.COMPILE, entry.refusal.message)
        elif entry.code is not None:
            body, size, kind = entry.code, entry.size, wire.CODE_BODY
        else:
            body = source.encode("utf-8", "surrogatepass")
            size, kind = len(body), wire.SOURCE
        refused = admit(size, len(args_json), limits.max_source_bytes, limits.max_args_bytes)
        if refused is not None:
            return refused
        request = wire.encode_request(
            kind,
            fname,
            _wire_modules(policy.allowed_modules),
            _wire_limits(limits),
            body,
            args_json,
            element,
        )
        outcome, seen, code = self._run(request, limits, kind == wire.SOURCE, element)
        if kind == wire.SOURCE:
            if code is not None:
                self._cache.put(source, codecache.Entry(size, code=code))
            elif (why := refusal(seen, outcome, limits)) is not None:
                self._cache.put(source, codecache.Entry(size, refusal=why))
        if not outcome.ok and outcome.error_kind in _LOUD_KINDS:
            log.warning("call %s: %s", function, outcome.reason)
        return outcome

    def _run(
        self, request: bytes, limits: Limits, expect_code: bool, as_element: bool = False
    ) -> tuple[Outcome, Seen, bytes | None]:
        link = self._current()
        handle = link.take(limits.wall_seconds + TAKE_GRACE_S)
        if isinstance(handle, str):
            return Outcome.failure(ErrorKind.CRASH, handle), Seen(gone=handle), None
        started = time.monotonic()
        heard = call.converse(
            handle,
            request,
            started + limits.wall_seconds,
            wire.result_cap(limits.max_result_bytes, limits.max_stdout_bytes),
            expect_code,
        )
        wall = heard.ended - started
        report = None
        if heard.result is None and heard.malformed is None and heard.killed is None:
            report = link.report(handle.serial, REPORT_WAIT_S)
        elif heard.killed is not None:
            report = link.report(handle.serial, TIMEOUT_REPORT_WAIT_S)
        link.release(handle, need_report=False)
        if heard.result is not None:
            usage = Usage(wall, heard.result.cpu_s, heard.result.max_rss_bytes)
        elif report is not None:
            usage = Usage(wall, report[1], report[2])
        else:
            usage = Usage(wall)
        gone = link.dead or "the sandbox forker did not report the child's exit"
        seen = Seen(
            result=heard.result,
            frame_error=heard.frame_error,
            malformed=heard.malformed,
            status=None if report is None else report[0],
            killed=heard.killed,
            compiling=expect_code and not heard.compiled,
            gone=gone,
        )
        return classify(seen, usage, limits, as_element), seen, heard.code

    # -- private hooks for tests and the benchmark ------------------------------------------
    def _probe(
        self,
        name: str,
        limits: Limits | None = None,
        params: Mapping[str, Any] | None = None,
        element: bool = False,
    ) -> Outcome:
        """Run a trusted probe (probes.PROBES) in a fully isolated child, under ``limits``;
        ``params`` reach it as ``ctx["args"]``; ``element`` as in :meth:`call`."""
        limits = limits or self.policy.limits
        args = _NO_ARGS if params is None else json.dumps([[], dict(params)]).encode()
        request = wire.encode_request(
            wire.PROBE, name.encode(), 0, _wire_limits(limits), b"", args, element
        )
        return self._run(request, limits, False, element)[0]

    def _stats(self) -> dict[str, Any]:
        """The ready spares, the children running calls, the cache."""
        stats = self._current().stats()
        stats.update(cache=len(self._cache), cache_bytes=self._cache.bytes)
        return stats

    def _held_fds(self) -> set[int]:
        link = self._link
        return set() if link is None else link.fds()

    @property
    def _forker_pid(self) -> int:
        return self._current().pid
