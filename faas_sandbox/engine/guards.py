"""The restricted language: compile with RestrictedPython, run with guarded hooks.

This module and ``transform.py`` (the compiler's AST policy) are the only ones that import
RestrictedPython. ``compile_source`` runs in a child, under the call's limits;
``make_globals`` builds one call's globals: in the forker before any fork (each child then
gets its own never-used copy, :class:`~faas_sandbox.engine.run.Prepared`) or per call
in-process.

A guard that refuses something raises :class:`GuardViolation` (a ``BaseException``, so
``except Exception`` in user code does not swallow it) and also records it in the call's
:class:`RunState`, so a call that catches the refusal with a bare ``except:`` still ends as
``forbidden``. The same holds for a print flood past its cap (``output``).

Why the builtins in ``_SAFE_BUILTIN_NAMES`` are safe to hand out (reviewed 2026-11, RP 9.0,
CPython 3.11). The rule: nothing here may look up an attribute by a caller-chosen name in C,
evaluate code, reach a module, frame or code object, or expose the process (files, ids).

* ``super``: its attribute reads go through ``_getattr_`` like any other object's. The only
  ``_`` names ``_getattr_`` lets through are those in RestrictedPython's
  ``ALLOWED_FUNC_NAMES`` (``__init__``, ``__eq__`` ... the dunders user classes may define),
  and only on ``super`` objects, so ``super().__init__(...)`` works. What that returns is a
  bound method or slot wrapper whose every attribute starts with ``_``: a dead end.
* ``object``, ``property``, ``classmethod``, ``staticmethod``: plain descriptors and the root
  class. Everything dangerous on them (``__subclasses__``, ``__func__``, ``__get__``) starts
  with ``_``; ``object``/classes are reachable anyway through ``int.mro()``.
* Class creation without ``type``: ``class`` statements go through ``__metaclass__``
  (``class_factory``), which only calls ``type(name, bases, ns)`` and marks the class
  writable. Class bodies cannot bind ``_`` names except the ALLOWED_FUNC_NAMES dunders, so
  no ``__getattr__``/``__getattribute__``/``__init_subclass__``/``__class_getitem__``/
  ``__set_name__``/``__format__``; ``metaclass=`` and every other class keyword are refused
  at compile time (``transform.py``). ``type`` itself is *not* offered: its three-argument
  form builds a class from a dict with arbitrary dunder keys, past those checks.
* ``iter``: ``iter(callable, sentinel)`` only calls the callable until it returns the
  sentinel; it is a CPU/memory loop, bounded by the limits like ``while True``.
* ``format``: applies a *format spec* (``'>10'``, ``'.2f'``, ``'%Y'`` for dates) via the
  value's ``__format__``; there are no field paths (``{0.__class__}``), so it walks nothing.
  ``str.format``/``format_map`` (which do walk field paths in C) are refused by name on
  every object; f-strings compile their expressions through the guards.
* ``bytes``, ``bytearray``, ``sorted``, ``tuple``, ``zip``: 9.0 dropped them because they
  iterate in C past ``_getiter_``, which only matters for per-item access checks; here
  ``_getiter_`` is plain ``iter``. They are data, sized by the memory limit.
* ``hash``, ``repr``, ``ascii``, ``callable``, ``isinstance``, ``issubclass``: read-only
  protocol calls (a user ``__eq__`` runs as restricted code).
* Deliberately absent: ``type``, ``getattr`` (a guarded one is offered), ``vars``, ``dir``,
  ``globals``, ``locals``, ``eval``, ``exec``, ``compile``, ``open``, ``input``,
  ``breakpoint``, ``__import__`` (a guarded one is offered), ``id`` (heap addresses of the
  forker's image; ``repr(object())`` still shows them, see docs/threat-model.md),
  ``memoryview``, ``BaseException``/``SystemExit``/``KeyboardInterrupt``
  /``GeneratorExit``, ``MemoryError`` (running out of memory is reported as ``memory``, not
  handled by name), ``ExceptionGroup`` (CVE-2025-22153).

Defence in depth beyond the checks on the attribute *name*: ``_getattr_`` also refuses to
*return* a module, frame, traceback or code object, whatever name led to it (for example an
``AttributeError.obj`` or a future proxy mistake).
"""

from __future__ import annotations
import __future__

import builtins as _builtins
import decimal
import functools
import operator
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import ALLOWED_FUNC_NAMES, INSPECT_ATTRIBUTES

from .modules import C_IMPORTS, PROXIES, ModuleProxy
from .transform import SandboxTransformer


class GuardViolation(BaseException):
    """Raised inside the sandbox when a guard refuses an attribute, import, builtin or write."""


class OutputOverflow(BaseException):
    """Raised inside the sandbox when print() output passes its cap."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compile result: a code object, or the compiler's messages (with line numbers)."""

    code: types.CodeType | None
    errors: tuple[str, ...] = ()


def compile_source(source: str, filename: str = "<function>") -> Compiled:
    """Compile untrusted source with RestrictedPython; never raises for bad source."""
    try:
        result = compile_restricted_exec(source, filename=filename, policy=SandboxTransformer)
    except RecursionError:
        return Compiled(None, ("source nests too deeply for the restricted compiler",))
    except MemoryError:
        return Compiled(None, ("source too large or too deeply nested to compile",))
    except (SyntaxError, ValueError, TypeError) as exc:  # e.g. NUL bytes
        return Compiled(None, (f"{type(exc).__name__}: {exc}",))
    if result.errors or result.code is None:
        return Compiled(None, tuple(result.errors) or ("source did not compile",))
    return Compiled(result.code)


@dataclass(slots=True)
class RunState:
    """Sticky facts about one call, kept out of reach of user code (closures only)."""

    max_stdout_bytes: int
    allowed_modules: frozenset[str] = frozenset()  # what ``import`` may name in this call
    violations: list[str] = field(default_factory=list)
    stdout_parts: list[str] = field(default_factory=list)
    stdout_bytes: int = 0
    stdout_overflow: bool = False

    def stdout(self) -> str:
        return "".join(self.stdout_parts)


# Builtins a pure function may use; the module docstring says why each one is safe.
_SAFE_BUILTIN_NAMES = (
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "zip",
    "None",
    "True",
    "False",
    "Ellipsis",
    "NotImplemented",
    "ArithmeticError",
    "AssertionError",
    "AttributeError",
    "EOFError",
    "Exception",
    "FloatingPointError",
    "ImportError",
    "IndexError",
    "KeyError",
    "LookupError",
    "ModuleNotFoundError",
    "NameError",
    "NotImplementedError",
    "OverflowError",
    "RecursionError",
    "RuntimeError",
    "StopIteration",
    "TypeError",
    "UnicodeDecodeError",
    "UnicodeEncodeError",
    "UnicodeError",
    "ValueError",
    "ZeroDivisionError",
)
_SAFE_BUILTINS = {name: getattr(_builtins, name) for name in _SAFE_BUILTIN_NAMES}
_REAL_BUILTINS = frozenset(dir(_builtins))

_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd,
    "-=": operator.isub,
    "*=": operator.imul,
    "/=": operator.itruediv,
    "//=": operator.ifloordiv,
    "%=": operator.imod,
    "**=": operator.ipow,
    "<<=": operator.ilshift,
    ">>=": operator.irshift,
    "&=": operator.iand,
    "|=": operator.ior,
    "^=": operator.ixor,
    "@=": operator.imatmul,
}
_UNREADABLE_TYPES = (types.ModuleType, types.FrameType, types.TracebackType, types.CodeType)
# decimal.Context: ``getcontext().prec = 50`` is the canonical decimal idiom; the context is
# per thread of a child that dies after the call, and C validates every field it accepts.
_WRITABLE_TYPES = (dict, list, bytearray, set, decimal.Context)
# `from __future__ import annotations` and friends: compile-time flags, inert at run time.
_FUTURE = ModuleProxy(
    "__future__", {name: getattr(__future__, name) for name in __future__.all_feature_names}
)


class _Builtins(dict[str, Any]):
    """Builtins whose missing names are refusals (``forbidden``) when Python has them."""

    __slots__ = ("_refuse",)
    _refuse: Callable[[str], None]  # raises GuardViolation

    def __missing__(self, name: str) -> Any:
        if name in _REAL_BUILTINS:
            self._refuse(f"builtin {name!r} is not available in the sandbox")
        raise KeyError(name)


class _Printer:
    """print() for one function frame, writing into the call's capped buffer. Defined once
    (building a class per call cost ~90 us); bound to the call's state by ``_print_``."""

    __slots__ = ("_state", "_refuse")

    def __init__(self, state: RunState, refuse: Any, _getattr_: Any = None) -> None:
        self._state, self._refuse = state, refuse

    def write(self, text: str) -> None:
        state = self._state
        size = len(text.encode("utf-8", "replace"))
        if state.stdout_bytes + size > state.max_stdout_bytes:
            room = max(0, state.max_stdout_bytes - state.stdout_bytes)
            state.stdout_parts.append(
                text.encode("utf-8", "replace")[:room].decode("utf-8", "ignore")
            )
            state.stdout_bytes = state.max_stdout_bytes
            state.stdout_overflow = True
            raise OutputOverflow(f"print output passed its cap of {state.max_stdout_bytes} bytes")
        state.stdout_parts.append(text)
        state.stdout_bytes += size

    def flush(self) -> None:  # print(..., flush=True)
        pass

    def __call__(self) -> str:
        return self._state.stdout()

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("file") is not None:
            self._refuse("print(file=...) is not available in the sandbox")
        kwargs["file"] = self
        print(*objects, **kwargs)


def make_globals(state: RunState, allowed_modules: frozenset[str] | None = None) -> dict[str, Any]:
    """A fresh globals dict for one call: guarded hooks, builtins and the import allow-list
    (``state.allowed_modules``, read at each import; ``allowed_modules`` sets it)."""
    if allowed_modules is not None:
        state.allowed_modules = allowed_modules

    def refuse(message: str) -> None:
        state.violations.append(message)
        raise GuardViolation(message)

    def guarded_getattr(obj: Any, name: Any, *default: Any) -> Any:
        if type(name) is not str:
            refuse("attribute names must be plain strings")
        if name.startswith("_"):
            if not (type(obj) is super and name in ALLOWED_FUNC_NAMES):
                refuse(f"access to attribute {name!r} is not allowed")
        elif name in INSPECT_ATTRIBUTES or name.endswith("__roles__"):
            refuse(f"access to attribute {name!r} is not allowed")
        if name in ("format", "format_map"):
            refuse(f"{name}() is not available in the sandbox (use an f-string)")
        if isinstance(obj, ModuleProxy) and name not in obj._faas_attrs:
            refuse(f"{obj._faas_name}.{name} is not exposed in the sandbox")
        if isinstance(obj, _UNREADABLE_TYPES):
            refuse(f"access to {type(obj).__name__} objects is not allowed")
        value = getattr(obj, name, *default)
        if isinstance(value, _UNREADABLE_TYPES):
            refuse(
                f"attribute {name!r} leads to a {type(value).__name__} object, which is not allowed"
            )
        return value

    def guarded_hasattr(obj: Any, name: Any) -> bool:
        try:
            guarded_getattr(obj, name)
        except AttributeError:
            return False
        return True

    def guarded_write(obj: Any) -> Any:
        if isinstance(obj, _WRITABLE_TYPES) or getattr(type(obj), "_guarded_writes", False):
            return obj
        if isinstance(obj, type) and getattr(obj, "_guarded_writes", False):
            return obj
        refuse(f"objects of type {type(obj).__name__!r} cannot be modified in the sandbox")
        return None  # pragma: no cover

    def guarded_setattr(obj: Any, name: Any, value: Any) -> None:
        if type(name) is not str or name.startswith("_"):
            refuse(f"setting attribute {name!r} is not allowed")
        setattr(guarded_write(obj), name, value)

    def guarded_delattr(obj: Any, name: Any) -> None:
        if type(name) is not str or name.startswith("_"):
            refuse(f"deleting attribute {name!r} is not allowed")
        delattr(guarded_write(obj), name)

    def guarded_import(
        name: Any, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> ModuleProxy:
        if type(name) is not str or level != 0:
            refuse("relative imports are not allowed")
        if type(fromlist) is list and not fromlist and name in C_IMPORTS and name in sys.modules:
            # C code inside an exposed module importing one of its own helpers through
            # PyImport_Import (datetime.strftime -> time, strptime -> _strptime). Only that C
            # API passes a *list*: the compiler passes None or a tuple, and restricted code
            # cannot name __import__. PyImport_Import discards what we return and reads
            # sys.modules itself, so the caller gets no module object from us.
            return None  # type: ignore[return-value]
        if name == "__future__":
            proxy = _FUTURE
        elif name not in state.allowed_modules:
            refuse(f"import of {name!r} is not allowed by the policy")
        else:
            proxy = PROXIES[name]
        for item in fromlist or ():
            if type(item) is not str or item.startswith("_") or item == "*":
                refuse(f"'from {name} import {item}' is not allowed")
            if item not in proxy._faas_attrs:
                refuse(
                    f"'from {name} import {item}' is not allowed: {name}.{item} is not "
                    "exposed in the sandbox"
                )
        return proxy

    def class_factory(
        name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> type:
        if kwargs:
            refuse("class keywords are not allowed")
        cls = type(name, bases, namespace)
        cls._guarded_writes = True  # type: ignore[attr-defined]
        return cls

    builtins_ = _Builtins(_SAFE_BUILTINS)
    builtins_._refuse = refuse
    builtins_.update(
        getattr=guarded_getattr,
        hasattr=guarded_hasattr,
        setattr=guarded_setattr,
        delattr=guarded_delattr,
        __import__=guarded_import,
        __build_class__=_builtins.__build_class__,
    )
    return {
        "__builtins__": builtins_,
        "__name__": "sandbox",
        "__metaclass__": class_factory,
        "_getattr_": guarded_getattr,
        "_getitem_": operator.getitem,
        "_getiter_": iter,
        "_write_": guarded_write,
        "_print_": functools.partial(_Printer, state, refuse),
        "_apply_": lambda f, *a, **k: f(*a, **k),
        "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y),
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
    }
