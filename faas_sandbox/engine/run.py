"""One call inside a child, after its rlimits: load the code, run, encode the result once.

Everything here runs under the call's limits, so every untrusted step is paid by that call
alone: compiling the source (or unmarshalling the code the caller cached from an earlier
child), decoding the caller's JSON arguments, running the function and JSON-encoding its
return value. In-process (unit tests) it runs benign code only.

Compile: the errors are capped (:data:`MAX_ERRORS`, :data:`MAX_MESSAGE_CHARS`); a compile
that runs out of memory is ``compile`` with the COMPILE_LIMIT flag (the caller then caches
the refusal per memory limit). A successful compile sends a CODE frame *before* any user
code runs (NOCODE when over :data:`wire.MAX_CODE_BYTES`), so whatever the function does
later cannot change what is cached for its source.

The result is encoded exactly once (``ensure_ascii=False``); lone surrogates, which UTF-8
cannot carry, are then escaped in the text (``\\udXXX``, inside JSON strings the only place
they can be). A request with the ELEMENT flag gets the result's Colonies output element
instead, made from that JSON text (:mod:`.element`, the one place with the rule). Whatever user code
does during encoding (hooks raising, recursion, answering differently twice) ends as ``output``,
``runtime``, ``forbidden`` or ``memory``.

C-stack overflow: CPython 3.11 recurses in C without a depth check in many places (hashing a
nested tuple, next() through chained iterators, freeing chained generators, filters or
descriptors), so no recursion limit can stop a function from overflowing the C stack; the
child then gets SIGSEGV. :func:`install_stack_guard` (the forker, once, before any fork) sets
up the C handler of :mod:`._stackguard`, and :func:`execute` arms it per phase of the call
with the call's result pipe: an overflow then ends the call with the frame chosen for that
phase (:data:`OVERFLOW_FRAMES`) -- ``compile`` while compiling, ``runtime`` (a
RecursionError) while running, ``output`` while encoding the result, or ``memory`` in any
phase when the stack could not grow for lack of address space -- instead of a death without a
frame (``crash``). Stdout printed before the overflow is lost; usage is the child's own.
"""

from __future__ import annotations

import json
import marshal
import resource
import sys
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from .. import element
from ..kinds import ErrorKind
from . import probes, wire
from .guards import GuardViolation, OutputOverflow, RunState, compile_source, make_globals

try:
    from . import _stackguard
except ImportError:  # not built (a checkout without `make install`): an overflow stays `crash`
    _stackguard = None  # type: ignore[assignment]

MAX_RESULT_DEPTH = 200  # nesting levels of a result
MAX_MESSAGE_CHARS = 2000  # error text sent back
MAX_ERRORS = 20  # compile errors sent back
_KIND = {name: i for i, name in enumerate(wire.RESULT_KINDS)}
# The phases of a call, each with its pair of overflow frames (index = phase * 2 + 1 when the
# stack could not grow before its RLIMIT_STACK, i.e. the address space ran out).
COMPILING, RUNNING, ENCODING = 0, 1, 2
_NOT_ARMED = -1
STACK_TEXT = "the C stack overflowed"
_OVERFLOWS = (
    (ErrorKind.COMPILE, 0, f"source nests too deeply for the compiler ({STACK_TEXT})"),
    (
        ErrorKind.COMPILE,
        wire.COMPILE_LIMIT,
        "compile exceeded its memory limit (the C stack could not grow)",
    ),
    (ErrorKind.RUNTIME, 0, f"RecursionError: maximum recursion depth exceeded in C ({STACK_TEXT})"),
    (ErrorKind.MEMORY, 0, "memory limit exceeded (the C stack could not grow)"),
    (ErrorKind.OUTPUT, 0, f"result nests too deeply to encode ({STACK_TEXT})"),
    (ErrorKind.MEMORY, 0, "memory limit exceeded (the C stack could not grow)"),
)
OVERFLOW_FRAMES = tuple(
    wire.encode_result(_KIND[kind], flags, 0.0, 0, b"", b"", text.encode())
    for kind, flags, text in _OVERFLOWS
)
_CPU_AT = wire.FRAME.size + 2  # RES_HEAD: kind u8, flags u8, cpu_s f64, max_rss u64, ...
_RSS_AT = _CPU_AT + 8


def _no_guard(fd: int, phase: int) -> None:
    pass


# _arm(fd, phase): which frame an overflow from here on writes, and where (fd < 0: none). The
# C function itself (no syscall; a Python wrapper cost each child a few more page faults).
_arm = _stackguard.arm if _stackguard is not None else _no_guard


class _Refused(Exception):
    """The return value cannot be sent back (kind ``output``)."""


class _CompileFailed(Exception):
    def __init__(self, message: str, flags: int = 0) -> None:
        super().__init__(message)
        self.flags = flags


def describe(exc: BaseException) -> str:
    """``"TypeName: text"``; runs user code (``__str__``), so it must not raise."""
    try:
        name = type(exc).__name__
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return f"{type(exc).__name__}: <unprintable exception>"
    return cap(f"{name}: {text}" if text else name)


def cap(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "..."


def compile_errors(errors: tuple[str, ...]) -> str:
    """The first MAX_ERRORS errors, at most MAX_MESSAGE_CHARS characters."""
    text = "; ".join(errors[:MAX_ERRORS])
    if len(errors) > MAX_ERRORS:
        text += f"; ... and {len(errors) - MAX_ERRORS} more errors"
    return cap(text)


def install_stack_guard() -> bool:
    """Install the C-stack guard's SIGSEGV handler and alternate stack in this process (the
    forker, once, before any fork: children inherit both, and their filter refuses the
    syscalls). False when the module is not built or this CPU is not supported; a child's
    overflow is then ``crash``, as before."""
    if _stackguard is None or not _stackguard.supported():
        return False
    _stackguard.install(OVERFLOW_FRAMES, _CPU_AT, _RSS_AT)
    return True


def stack_depth() -> int:
    frame: FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        depth += 1
        frame = frame.f_back
    return depth


def encode_value(value: Any, max_bytes: int, as_element: bool = False) -> bytes:
    """The JSON of a return value, encoded once (``as_element``: then turned into its Colonies
    output element, :mod:`.element`); :class:`_Refused` says why not."""
    old_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(stack_depth() + MAX_RESULT_DEPTH + 10)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        if as_element:
            text = element.from_json(text)
    except RecursionError:
        raise _Refused(
            f"result nests deeper than {MAX_RESULT_DEPTH} levels (or is cyclic)"
        ) from None
    except element.Unsendable as exc:
        raise _Refused(str(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Refused(f"result is not JSON-serialisable: {describe(exc)}") from None
    finally:
        sys.setrecursionlimit(old_limit)
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = element.escape_surrogates(text).encode("utf-8")
    if len(data) > max_bytes:
        raise _Refused(
            f"result is {len(data)} bytes of JSON, over the limit of {max_bytes} (max_result_bytes)"
        )
    return data


def load_code(request: wire.Request, reserve: list[Any], emit: Callable[[bytes], None]) -> CodeType:
    """The call's code object: unmarshal the caller's copy, or compile and emit it."""
    if request.kind == wire.CODE_BODY:
        code = marshal.loads(request.body)
        if not isinstance(code, CodeType):
            raise _CompileFailed("cached code is not a code object")
        return code
    try:
        compiled = compile_source(request.body.decode("utf-8", "surrogatepass"))
    except MemoryError:
        reserve.clear()
        raise _CompileFailed(
            f"compile exceeded its memory limit (memory_mb={request.limits.memory_mb})",
            wire.COMPILE_LIMIT,
        ) from None
    if compiled.code is None:
        if compiled.errors and compiled.errors[0].startswith("source too large"):
            raise _CompileFailed(
                f"compile exceeded its memory limit (memory_mb={request.limits.memory_mb})",
                wire.COMPILE_LIMIT,
            )
        raise _CompileFailed(compile_errors(compiled.errors))
    blob = marshal.dumps(compiled.code)
    emit(
        wire.frame(wire.CODE, blob)
        if len(blob) <= wire.MAX_CODE_BYTES
        else wire.frame(wire.NOCODE, b"")
    )
    return compiled.code


def _call(
    request: wire.Request,
    state: RunState,
    g: dict[str, Any] | None,
    reserve: list[Any],
    emit: Callable[[bytes], None],
    ctx: dict[str, Any],
    fd: int,
) -> bytes | tuple[str, str]:
    """Run the function; the encoded result or ``(kind, message)``. ``fd``: the result pipe
    an overflow's frame goes to (-1: none, in-process)."""
    code = None
    if request.kind != wire.PROBE:
        _arm(fd, COMPILING)
        code = load_code(request, reserve, emit)
    _arm(fd, RUNNING)
    try:
        args, kwargs = json.loads(request.args)
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("expected [args, kwargs]")
    except (ValueError, TypeError, RecursionError) as exc:
        return ErrorKind.RUNTIME, f"ValueError: arguments could not be decoded: {describe(exc)}"
    if code is None:
        value = probes.PROBES[request.function]({**ctx, "args": kwargs})  # oslayer: params
    else:
        g = make_globals(state) if g is None else g
        exec(code, g)
        f = g.get(request.function)
        if f is None or not callable(f):
            return ErrorKind.RUNTIME, f"NameError: source defines no function {request.function!r}"
        value = f(*args, **kwargs)
    _arm(fd, ENCODING)
    return encode_value(value, request.limits.max_result_bytes, request.element)


class Prepared:
    """A RunState and its guarded globals, built in the forker before any fork so that no
    child pays for building them (about 100 copy-on-write page faults each here: the copied
    builtins, the closures). The forker never uses them; each child gets its own
    copy-on-write copy, used by at most one call, and dies after it."""

    __slots__ = ("state", "globals", "taken")

    def __init__(self) -> None:
        self.state = RunState(0)
        self.globals = make_globals(self.state, frozenset())
        self.taken = False

    def take(self, request: wire.Request) -> tuple[RunState, dict[str, Any]]:
        """This call's state and globals; a second take is an engine bug."""
        if self.taken:
            raise RuntimeError("prepared globals serve one call")
        self.taken = True
        self.state.max_stdout_bytes = request.limits.max_stdout_bytes
        self.state.allowed_modules = request.modules
        return self.state, self.globals


def execute(
    request: wire.Request,
    reserve: list[Any],
    emit: Callable[[bytes], None],
    ctx: dict[str, Any] | None = None,
    prepared: Prepared | None = None,
) -> bytes:
    """Run one call and return its complete RESULT frame (the child's own usage included).
    ``prepared``: globals built before fork (a child's one call); else built here."""
    if prepared is not None:
        state, g = prepared.take(request)
    else:
        state = RunState(request.limits.max_stdout_bytes, request.modules)
        g = None
    memory_text = f"memory limit exceeded (memory_mb={request.limits.memory_mb})"
    fallback = wire.encode_result(
        _KIND[ErrorKind.MEMORY], 0, 0.0, 0, b"", b"", memory_text.encode()
    )
    flags = 0
    ctx = ctx or {}
    fd = ctx.get("result_fd", _NOT_ARMED)
    try:
        try:
            result = _call(request, state, g, reserve, emit, ctx, fd)
        except _CompileFailed as exc:
            result, flags = (ErrorKind.COMPILE, str(exc)), exc.flags
        except _Refused as exc:
            result = (ErrorKind.OUTPUT, str(exc))
        except MemoryError:
            reserve.clear()
            result = (ErrorKind.MEMORY, memory_text)
        except GuardViolation as exc:
            result = (ErrorKind.FORBIDDEN, str(exc))
        except OutputOverflow as exc:
            result = (ErrorKind.OUTPUT, str(exc))
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything
            result = (ErrorKind.RUNTIME, describe(exc))
        finally:
            _arm(_NOT_ARMED, _NOT_ARMED)  # from here on a SIGSEGV is the engine's: `crash`
        # Sticky facts win: a refusal or a flood that user code caught still ends the call.
        if state.violations:
            result = (ErrorKind.FORBIDDEN, cap(state.violations[0]))
        elif state.stdout_overflow:
            result = (
                ErrorKind.OUTPUT,
                f"print output passed its cap of {state.max_stdout_bytes} bytes (max_stdout_bytes)",
            )
        stdout = state.stdout().encode("utf-8", "replace")
        ru = resource.getrusage(resource.RUSAGE_SELF)
        cpu, rss = ru.ru_utime + ru.ru_stime, ru.ru_maxrss * 1024
        if isinstance(result, bytes):
            return wire.encode_result(0, 0, cpu, rss, result, stdout, b"")
        kind, message = result
        return wire.encode_result(
            _KIND[kind], flags, cpu, rss, b"", stdout, message.encode("utf-8", "replace")
        )
    except MemoryError:
        reserve.clear()
        return fallback
