"""The bad-input drill: malformed specs and unusable function files against a real executor.

Every process must fail with a clear reason of the expected kind (or, where the server
repairs the input, end cleanly), nothing may crash, and nothing may be written outside the
sandbox's temp dir. Shared by test_drills.py and bench/soak.py like drills.py.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.errors import ColoniesRefused
from faas_sandbox.kinds import ProcessState
from harness import (
    NOBODY,
    REPO,
    Drill,
    Executor,
    check_executor_health,
    deploy_echo,
    raw_spec,
    served_after,
    spec,
    submit,
    submit_raw_payload,
    timed,
    unique,
    upload,
    wait_ended,
)


def _snapshot(paths: Sequence[Path]) -> set[str]:
    """Files owned by the sandbox uid directly in these dirs, and everything in the repo tree
    that is not a cache (what a sandbox child or a confused executor could have written)."""
    out = set()
    for directory in paths:
        with contextlib.suppress(OSError):
            for entry in os.scandir(directory):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == NOBODY:
                        out.add(entry.path)
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [
            d
            for d in dirs
            if d
            not in (
                ".venv",
                "__pycache__",
                ".git",
                ".dev",
                ".pytest_cache",
                ".mypy_cache",
                ".ruff_cache",
            )
        ]
        for name in files:
            path = os.path.join(root, name)
            with contextlib.suppress(OSError):
                if os.stat(path).st_uid == NOBODY:
                    out.add(path)
    return out


BAD_SOURCES: dict[str, tuple[bytes, str, str]] = {
    # suffix: (file content, expected kind, text expected in the reason)
    "notpython": (b"this is not python at all, just prose.\n", "compile", ""),
    "binary": (bytes(range(256)) * 4, "not_found", "not UTF-8"),
    "nul": (b"def f():\n    return 1\n\x00\n", "compile", ""),
    "empty": (b"", "not_found", "empty"),
    "huge": (b"# padding\n" * (10 * 1024 * 1024 // 10), "not_found", "source limit"),
}


def bad_specs(kind: str, echo: str) -> dict[str, tuple[dict[str, Any], str, str]]:
    """name: (spec, expected kind, text expected in the reason)."""
    big = json.dumps(["x" * (3 * 1024 * 1024)])
    deep = "[" * 100_000 + "]" * 100_000
    return {
        "no kwargs": (raw_spec({}, executortype=kind), "spec", "kwargs.function is missing"),
        "kwargs not an object": (raw_spec(["a"], executortype=kind), "*", ""),
        "function not a string": (
            raw_spec({"function": 123}, executortype=kind),
            "spec",
            "invalid function name",
        ),
        "path in name": (
            raw_spec({"function": "../x"}, executortype=kind),
            "spec",
            "invalid function name",
        ),
        "slash in name": (
            raw_spec({"function": "a/b"}, executortype=kind),
            "spec",
            "invalid function name",
        ),
        "args not JSON": (
            raw_spec({"function": echo, "args": "[1, 2"}, executortype=kind),
            "spec",
            "kwargs.args is not valid JSON",
        ),
        "args not an array": (
            raw_spec({"function": echo, "args": '{"a": 1}'}, executortype=kind),
            "spec",
            "an array",
        ),
        "kwargs not JSON object": (
            raw_spec({"function": echo, "kwargs": "[1]"}, executortype=kind),
            "spec",
            "an object",
        ),
        "NaN in args": (
            raw_spec({"function": echo, "args": "[NaN]"}, executortype=kind),
            "spec",
            "NaN",
        ),
        "deep args": (raw_spec({"function": echo, "args": deep}, executortype=kind), "*", ""),
        "unknown kwarg": (
            raw_spec({"function": echo, "x": "1"}, executortype=kind),
            "spec",
            "unknown kwargs",
        ),
        "wrong arity": (
            raw_spec({"function": echo, "args": "[1, 2, 3]"}, executortype=kind),
            "runtime",
            "TypeError",
        ),
        "bad keyword name": (
            raw_spec({"function": echo, "kwargs": '{"a-b": 1}'}, executortype=kind),
            "spec",
            "not an identifier",
        ),
        "huge args": (
            raw_spec({"function": echo, "args": big}, executortype=kind),
            "spec",
            "over the limit",
        ),
        "lone surrogate in args": (
            raw_spec({"function": echo, "args": '["\\ud800"]'}, executortype=kind),
            "*",
            "",
        ),
        "arg not a number": (
            raw_spec({"function": echo, "arg": "warm"}, executortype=kind),
            "spec",
            "not a number",
        ),
        "unknown funcname": (
            raw_spec({"function": echo}, funcname="run", executortype=kind),
            "spec",
            "unknown funcname",
        ),
        "env code not base64": (
            raw_spec({}, funcname=echo, executortype=kind, env={"code": "%%% not base64"}),
            "spec",
            "base64",
        ),
        "missing function": (
            raw_spec({"function": unique("nothing_")}, executortype=kind),
            "not_found",
            "no function",
        ),
    }


def drill_bad_input(member: ColoniesClient, workdir: Path) -> Drill:
    """Malformed specs and unusable function files: each process fails with a clear reason
    of the expected kind, nothing crashes, nothing is written outside the sandbox's temp dir."""
    drill = Drill("bad input (specs, files)")
    kind = unique("drill-bad-")
    echo = deploy_echo()
    sources = {}
    for suffix, (data, _, _) in BAD_SOURCES.items():
        name = unique(f"{suffix}_")
        upload(name, data)
        sources[suffix] = name
    cwd = workdir / unique("cwd-")
    cwd.mkdir()
    watched = [Path("/tmp"), Path("/dev/shm"), Path.cwd(), cwd]
    before = _snapshot(watched)
    ex = None
    with timed(drill):
        try:
            ex = Executor(workdir / f"{kind}.log", kind, cwd=cwd)
            mark = len(ex.log())
            cases: dict[str, tuple[str, str, str]] = {}
            for label, (the_spec, want, text) in bad_specs(kind, echo).items():
                try:
                    cases[label] = (submit(member, the_spec), want, text)
                except ColoniesRefused as exc:
                    drill.details[label] = f"refused by the server at submit: {exc}"
            for suffix, name in sources.items():
                _, want, text = BAD_SOURCES[suffix]
                cases[f"file: {suffix}"] = (
                    submit(member, spec(name, executortype=kind)),
                    want,
                    text,
                )
            for label, raw in _invalid_utf8_payloads(kind, echo).items():
                try:
                    cases[label] = (str(submit_raw_payload(member, raw)["processid"]), "*", "")
                except ColoniesRefused as exc:
                    drill.details[label] = f"refused by the server at submit: {exc}"
            ended = wait_ended(member, [pid for pid, _, _ in cases.values()], 40)
            outcomes = {}
            for label, (pid, want, text) in cases.items():
                p = ended[pid]
                reason = (p.get("errors") or [""])[0]
                got = (
                    "SUCCESS"
                    if p["state"] == ProcessState.SUCCESS
                    else (
                        reason.split(":", 1)[0]
                        if p["state"] == ProcessState.FAILED
                        else f"state {p['state']}"
                    )
                )
                outcomes[label] = got if got == "SUCCESS" else reason[:100]
                if want == "*":
                    drill.expect(
                        p["state"] in (ProcessState.SUCCESS, ProcessState.FAILED)
                        and got != "crash",
                        f"{label}: {got} {reason[:200]!r}",
                    )
                else:
                    drill.expect(
                        got == want and text in reason,
                        f"{label}: expected {want} with {text!r}, got {got}: {reason[:200]!r}",
                    )
                drill.expect(
                    len(reason) <= 4000 and "Traceback" not in reason,
                    f"{label}: unclear reason {reason[:200]!r}",
                )
            served_after(drill, member, echo, kind)
            check_executor_health(drill, ex, mark)
            drill.details.update(outcomes)
            kinds = Counter(v if v == "SUCCESS" else v.split(":", 1)[0] for v in outcomes.values())
            drill.facts["cases"] = len(outcomes) + sum(
                1 for v in drill.details.values() if str(v).startswith("refused by")
            )
            drill.facts["ended as"] = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
            drill.facts["refused at submit"] = len(drill.details) - len(outcomes)
        finally:
            if ex is not None:
                status = ex.stop()
                drill.expect(status == 0, f"executor exit status {status}")
    after = _snapshot(watched)
    drill.expect(after <= before, f"new files by the sandbox uid: {sorted(after - before)}")
    leftovers = sorted(os.listdir(cwd))
    drill.expect(not leftovers, f"files in the executor's cwd: {leftovers}")
    drill.facts["new files"] = len(after - before) + len(leftovers)
    return drill


def _invalid_utf8_payloads(kind: str, echo: str) -> dict[str, bytes]:
    """submitfuncspecmsg payloads with raw invalid UTF-8 inside JSON strings."""
    colony = os.environ["COLONIES_COLONY_NAME"]

    def payload(kwargs_json: bytes, args_json: bytes = b"[]") -> bytes:
        return (
            b'{"msgtype":"submitfuncspecmsg","spec":{"nodename":"execute",'
            b'"funcname":"execute","args":'
            + args_json
            + b',"kwargs":'
            + kwargs_json
            + b',"priority":0,"maxwaittime":-1,"maxexectime":10,"maxretries":0,'
            b'"label":"","env":{},"conditions":{"colonyname":"'
            + colony.encode()
            + b'","executortype":"'
            + kind.encode()
            + b'"}}}'
        )

    fn = echo.encode()
    return {
        "invalid UTF-8 in kwargs.args": payload(
            b'{"function":"' + fn + b'","args":"[\\"\xff\xfe\\"]"}'
        ),
        "invalid UTF-8 in kwargs key": payload(b'{"function":"' + fn + b'","\xc3\x28":"1"}'),
        "invalid UTF-8 in spec.args": payload(b'{"function":"' + fn + b'"}', b'["\xed\xa0\x80"]'),
        "invalid UTF-8 in function": payload(b'{"function":"ec\xffho"}'),
    }
