"""The restricted compiler's AST policy: RestrictedPython 9.0's transformer with five changes.

``guards.compile_source`` compiles with :class:`SandboxTransformer`. Every change either
removes attack surface or rewrites ordinary code into the *same* hooks RestrictedPython
already uses, so no new trust is introduced:

1. **Annotations are dropped** from ``def`` parameters and returns, so they are never
   evaluated and never stored. A string annotation is an unrestricted ``eval()`` waiting for
   a helper that resolves it (``typing.get_type_hints``, ``functools.singledispatch``,
   ``inspect.signature(eval_str=True)``; a published RestrictedPython bypass). None of those helpers
   is importable today; dropping the annotations keeps that true if one ever is.
2. **Annotated assignment** ``x: T = v`` becomes ``x = v`` (the annotation is dropped and
   never evaluated) and a bare ``x: T`` becomes ``pass``. 9.0 refuses ``AnnAssign`` outright.
3. **Augmented assignment of attributes and items** (``self.n += 1``, ``counts[w] += 1``),
   refused by 9.0, becomes::

       _tmp0 = <obj>; [_tmp1 = <key>]
       try: _write_(_tmp0).attr = _inplacevar_('+=', _getattr_(_tmp0, 'attr'), <value>)
       finally: del _tmp0[, _tmp1]

   i.e. exactly the guarded read, the guarded in-place operator and the guarded write that
   RestrictedPython emits for ``x = x + v`` spelled out, evaluated in Python's own order
   (object, key, current value, right-hand side, store). The attribute name gets the same
   compile-time checks as any attribute, and ``_getattr_`` checks it again at run time.
   Temporary names start with ``_``, so user code can never name them. Slices keep 9.0's
   refusal.
4. **Class keywords are refused.** 9.0 refuses ``metaclass=`` but silently *drops* every other
   keyword, including ``**{'metaclass': ...}``; refusing them makes the drop visible.
5. **``super(...).__init__``** (and the other dunders in ``ALLOWED_FUNC_NAMES``, which user
   classes may define) may be *read* when the object is written literally as a call of
   ``super``. It compiles to ``_getattr_(super(...), '__init__')``; ``_getattr_`` allows the
   name only if the object really is a ``super`` instance (``super`` may have been rebound).
   Everything on the bound method it returns starts with ``_``.
"""

from __future__ import annotations

import ast
from typing import Any

from RestrictedPython.transformer import (
    ALLOWED_FUNC_NAMES,
    INSPECT_ATTRIBUTES,
    IOPERATOR_TO_STR,
    RestrictingNodeTransformer,
    copy_locations,
)


def _name(id_: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(id_, ctx or ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func), args=list(args), keywords=[])


class SandboxTransformer(RestrictingNodeTransformer):
    """RestrictingNodeTransformer plus the five changes in the module docstring."""

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        value = node.value
        if (
            node.attr in ALLOWED_FUNC_NAMES
            and isinstance(node.ctx, ast.Load)
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Name)
            and value.func.id == "super"
        ):
            new = _call("_getattr_", self.visit(value), ast.Constant(node.attr))
            copy_locations(new, node)
            return new
        return super().visit_Attribute(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        args = node.args
        for arg in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg):
            if arg is not None:
                arg.annotation = None
        node.returns = None
        return super().visit_FunctionDef(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> Any:
        new: ast.stmt
        if node.value is None:
            new = ast.Pass()
        else:
            new = ast.Assign(targets=[node.target], value=node.value)
        copy_locations(new, node)
        return self.visit(new)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        if any(keyword.arg != "metaclass" for keyword in node.keywords):
            self.error(node, "Class keywords (including **kwargs) are not allowed.")
        return super().visit_ClassDef(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if isinstance(target, ast.Subscript) and any(
            isinstance(n, ast.Slice) for n in ast.walk(target.slice)
        ):
            return super().visit_AugAssign(node)  # 9.0's refusal
        if not isinstance(target, (ast.Attribute, ast.Subscript)):
            return super().visit_AugAssign(node)  # names: n = _inplacevar_(op, n, v)

        obj = self.gen_tmp_name()
        temps = [obj]
        setup: list[ast.stmt] = [ast.Assign([_name(obj, ast.Store())], self.visit(target.value))]
        load: ast.expr
        store: ast.expr
        if isinstance(target, ast.Attribute):
            self._check_attribute_name(node, target.attr)
            load = _call("_getattr_", _name(obj), ast.Constant(target.attr))
            store = ast.Attribute(_call("_write_", _name(obj)), target.attr, ast.Store())
        else:
            key = self.gen_tmp_name()
            temps.append(key)
            setup.append(ast.Assign([_name(key, ast.Store())], self.visit(target.slice)))
            load = _call("_getitem_", _name(obj), _name(key))
            store = ast.Subscript(_call("_write_", _name(obj)), _name(key), ast.Store())
        value = _call(
            "_inplacevar_",
            ast.Constant(IOPERATOR_TO_STR[type(node.op)]),
            load,
            self.visit(node.value),
        )
        body: list[ast.stmt] = [ast.Assign([store], value)]
        cleanup: list[ast.stmt] = [ast.Delete([_name(t, ast.Del()) for t in temps])]
        new = [*setup, ast.Try(body=body, handlers=[], orelse=[], finalbody=cleanup)]
        for stmt in new:
            copy_locations(stmt, node)
        return new

    def _check_attribute_name(self, node: ast.AST, attr: str) -> None:
        # The same three checks as RestrictingNodeTransformer.visit_Attribute.
        if attr.startswith("_") and attr != "_":
            self.error(node, f'"{attr}" is an invalid attribute name because it starts with "_".')
        if attr.endswith("__roles__"):
            self.error(
                node, f'"{attr}" is an invalid attribute name because it ends with "__roles__".'
            )
        if attr in INSPECT_ATTRIBUTES:
            self.error(
                node,
                f'"{attr}" is a restricted name, that is forbidden to access in RestrictedPython.',
            )
