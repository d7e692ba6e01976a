"""Will this source ever run under the policy? A cheap, bounded check before deploying.

``deploy`` runs it for each function it uploads, with that function's limits and allowed
modules, so code that can never run (``import os``, a file over ``max_source_bytes``) is
refused before it reaches ColonyFS. It uses only ``ast`` and the policy's module *names*: no
engine, no RestrictedPython, so any front end may call it. Bounded: the size is checked
before the bytes are decoded or parsed, and parsing stops at a recursion error.
The sandbox's restricted compiler still has the last word when a call runs.
"""

from __future__ import annotations

import ast

from ..policy import Policy
from ..sizes import source_over


def problems(data: bytes, policy: Policy, function: str, filename: str = "<source>") -> list[str]:
    """Reasons ``data`` can never run as ``function`` under ``policy`` ([] if none found)."""
    call = policy.for_function(function)
    if (why := source_over(len(data), call.limits.max_source_bytes)) is not None:
        return [why]
    try:
        tree = ast.parse(data.decode("utf-8"), filename=filename)
    except UnicodeDecodeError as exc:
        return [f"not UTF-8 text ({exc.reason} at byte {exc.start})"]
    except SyntaxError as exc:
        return [f"line {exc.lineno}: SyntaxError: {exc.msg}"]
    except (RecursionError, MemoryError, ValueError) as exc:
        return [f"cannot be parsed: {type(exc).__name__}"]
    allowed = call.allowed_modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            found.append(f"line {node.lineno}: relative imports cannot run in the sandbox")
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module.split(".")[0] not in allowed:
                found.append(
                    f"line {node.lineno}: import of {module!r} is not allowed for "
                    f"{function} by policy {policy.name!r} (allowed: "
                    f"{', '.join(sorted(allowed))})"
                )
    return found
