"""The executor against the real local stack (Colonies v1.9.12, PostgreSQL, MinIO).

Each executor runs as a real `faas-sandbox executor` subprocess. Tests use their own executor
type (except the tutorial's, which must be `faas-executor`) and uniquely named functions, so
they do not pick up each other's work in the shared colony.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from faas_live import deploy as upload_data
from faas_sandbox.colonies.client import (
    ColoniesClient,
    submit_call,
)
from faas_sandbox.kinds import ExecutorState, ProcessState

pytestmark = pytest.mark.colonies
REPO = Path(__file__).resolve().parents[2]
SUFFIX = uuid.uuid4().hex[:8]
TYPE = f"faas-it-{SUFFIX}"


class ExecutorProcess:
    """A `faas-sandbox executor` subprocess with its log in a file."""

    def __init__(self, log_path: Path, name: str, executor_type: str, *flags: str) -> None:
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()/kill()
        env = {**os.environ, "FAAS_SANDBOX_LOG_LEVEL": "INFO"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "faas_sandbox",
                "executor",
                "--identity",
                "self",
                "--name",
                name,
                "--executor-type",
                executor_type,
                *flags,
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_for_log("serving", 60)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"executor exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        try:  # anything left in its session (forker, children) after a kill
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()


@pytest.fixture(scope="module")
def member(stack) -> ColoniesClient:
    env = stack.env
    return ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env["COLONIES_SERVER_TLS"] == "true",
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executors")


@pytest.fixture(scope="module")
def executor(stack, logs_dir, member) -> Iterator[ExecutorProcess]:
    """One executor of this module's own type, with two calls in flight."""
    ex = ExecutorProcess(
        logs_dir / "main.log", f"it-main-{SUFFIX}", TYPE, "--concurrency", "2", "--grace", "5"
    )
    yield ex
    assert ex.stop() == 0, ex.log()
    assert "unregistered" in ex.log()
    assert member.get_executor(ex.name)["state"] == ExecutorState.UNREGISTERED


def deploy(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"fn_{uuid.uuid4().hex[:6]}.py"
    path.write_text(source)
    return subprocess.run(
        [sys.executable, "-m", "faas_sandbox", "deploy", str(path), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def call(
    member: ColoniesClient,
    function: str,
    args=(),
    kwargs=None,
    *,
    timeout: float = 20,
    executortype: str = TYPE,
    maxexectime: int = 10,
    maxretries: int = 0,
) -> dict:
    process = submit_call(
        member,
        function,
        args,
        kwargs,
        maxexectime=maxexectime,
        maxretries=maxretries,
        executortype=executortype,
    )
    return member.wait(process["processid"], timeout)


def test_tutorial_flow_end_to_end(stack, logs_dir, member):
    """deploy.py's upload_data, the tutorial's spec via pycolonies, [69.8] back."""
    from model import FuncSpec
    from pycolonies import colonies_client

    colonies, colonyname, _, _, prvkey = colonies_client()
    source = (REPO / "examples" / "convert.py").read_text()
    colonies.upload_data(
        colonyname, prvkey, filename="convert", data=source.encode("utf-8"), label="/faas"
    )
    tutorial_spec = {
        "conditions": {"executortype": "faas-executor"},
        "funcname": "execute",
        "kwargs": {"function": "convert", "arg": "21"},
    }
    # The server wakes one long-poll per submit among all waiters of the executor type, in any
    # colony (protocol §4.5): with `make run`'s executor also serving faas-executor (in colony
    # dev), the wake-up may go there, and ours then sees the call at its next poll. Short polls
    # keep that under a second, well inside the 10 s wait below.
    ex = ExecutorProcess(
        logs_dir / "tutorial.log", f"it-tutorial-{SUFFIX}", "faas-executor", "--assign-timeout", "1"
    )
    try:
        spec = FuncSpec(**tutorial_spec, maxexectime=10, maxretries=0)  # never 0 (§6.4)
        spec.conditions.colonyname = colonyname
        process = colonies.submit_func_spec(spec, prvkey)
        process = colonies.wait(process, 10, prvkey)
        assert process.output == [69.8]

        bad = FuncSpec(
            **{**tutorial_spec, "kwargs": {"function": "convert", "arg": "warm"}},
            maxexectime=10,
            maxretries=0,
        )
        bad.conditions.colonyname = colonyname
        pid = colonies.submit_func_spec(bad, prvkey).processid
        ended = member.wait(pid, 10)
        assert ended["state"] == ProcessState.FAILED
        assert ended["errors"] == ["spec: kwargs.arg is not a number: 'warm'"]
    finally:
        assert ex.stop() == 0, ex.log()
    assert "call " in ex.log() and "convert ok in" in ex.log()


def test_args_and_kwargs_as_json_text(executor, member, tmp_path):
    name = f"scale_{SUFFIX}"
    helper = f"times_{SUFFIX}"
    source = (
        f"def {helper}(v, factor):\n    return v * factor\n"
        f"def {name}(values, factor=1, *, label=None):\n"
        f"    return {{'label': label, 'scaled': [{helper}(v, factor) for v in values]}}\n"
    )
    done = deploy(tmp_path, source, "--function", name)  # the whole file, under one name
    assert done.returncode == 0, done.stderr
    assert f"deployed {name}" in done.stdout and helper not in done.stdout
    assert f"unchanged {name}" in deploy(tmp_path, source, "--function", name).stdout

    ended = call(member, name, [[1, 2, 3]], {"factor": 2.5, "label": "x"})
    assert ended["state"] == ProcessState.SUCCESS, ended["errors"]
    assert json.loads(ended["out"][0]) == {"label": "x", "scaled": [2.5, 5.0, 7.5]}

    # spec.args passed positionally (pycolonies allows str and int there)
    spec = {
        "funcname": "execute",
        "args": [[4]],
        "kwargs": {"function": name},
        "maxexectime": 10,
        "maxretries": 0,
        "conditions": {"colonyname": member.colony, "executortype": TYPE},
    }
    ended = member.wait(member.submit(spec)["processid"], 20)
    assert json.loads(ended["out"][0]) == {"label": None, "scaled": [4]}


FORMS = {  # result -> out as docs/protocol.md (Results) promises, through the real server
    "69.8": [69.8],
    "2**60": ["1152921504606846976"],
    "'caf\\u00e9 \\u2603'": ["café ☃"],
    "'21'": ['"21"'],
    "'[1]'": ['"[1]"'],
    "{'a': [1, 'é', None]}": ['{"a":[1,"é",null]}'],
    "['\\ud800']": ['["\\ud800"]'],
    "'a\\x00b'": ["a\x00b"],
    "None": ["null"],
    "True": ["true"],
}


def test_each_result_form_arrives_as_documented(executor, member, tmp_path):
    name = f"forms_{SUFFIX}"
    table = ", ".join(f"{i}: {expr}" for i, expr in enumerate(FORMS))
    source = (
        f"def {name}(i):\n    if i < 0:\n        return 'bad \\ud800 text'\n"
        f"    return {{{table}}}[i]\n"
    )
    done = deploy(tmp_path, source, "--function", name)
    assert done.returncode == 0, done.stderr
    for i, (expr, out) in enumerate(FORMS.items()):
        ended = call(member, name, [i])
        assert (expr, ended["state"], ended["out"]) == (expr, ProcessState.SUCCESS, out), ended[
            "errors"
        ]
    ended = call(member, name, [-1])
    assert ended["state"] == ProcessState.FAILED
    assert ended["errors"] == [
        "output: result is a string holding a lone surrogate (not valid "
        "Unicode text), which cannot be delivered unchanged"
    ]


def add_numbers(a, b):
    return a + b


def test_option3_inline_code(executor, member):
    from pycolonies import func_spec

    spec = func_spec(
        func=add_numbers,
        args=[2, 3],
        colonyname=member.colony,
        executortype=TYPE,
        maxexectime=10,
        maxretries=0,
    )
    ended = member.wait(member.submit(spec.model_dump(by_alias=True))["processid"], 20)
    assert ended["state"] == ProcessState.SUCCESS, ended["errors"]
    assert ended["out"] == [5]


def test_hostile_and_broken_functions_fail_with_their_kind(executor, member, tmp_path):
    fns = {
        f"spin_{SUFFIX}": "def spin_{s}():\n    while True:\n        pass\n",
        f"escape_{SUFFIX}": "def escape_{s}():\n    import os\n    return os.getcwd()\n",
        f"boom_{SUFFIX}": "def boom_{s}(x):\n    print('about to fail', x)\n"
        "    raise ValueError('bad input')\n",
    }
    for name, template in fns.items():
        if name.startswith("escape_"):  # `deploy` refuses it (import os): upload as the tutorial
            upload_data(name, template.format(s=SUFFIX))  # does; the executor must refuse it
            continue
        done = deploy(tmp_path, template.format(s=SUFFIX))
        assert done.returncode == 0, done.stderr
    convert = subprocess.run(
        [sys.executable, "-m", "faas_sandbox", "deploy", str(REPO / "examples" / "convert.py")],
        cwd=REPO,
        timeout=60,
        capture_output=True,
        text=True,
        check=False,
    )
    assert convert.returncode == 0, convert.stderr
    started = time.monotonic()
    spin = call(member, f"spin_{SUFFIX}", maxexectime=2)
    assert time.monotonic() - started < 8
    assert spin["state"] == ProcessState.FAILED and spin["errors"][0].startswith("timeout: "), spin[
        "errors"
    ]

    escape = call(member, f"escape_{SUFFIX}")
    assert escape["state"] == ProcessState.FAILED and escape["errors"][0].startswith("forbidden: ")

    boom = call(member, f"boom_{SUFFIX}", ["x"])
    assert boom["state"] == ProcessState.FAILED
    assert boom["errors"][0].startswith("runtime: ") and "bad input" in boom["errors"][0]
    log = "\n".join(entry["message"] for entry in member.get_logs(boom["processid"]))
    assert "about to fail x" in log and f"[faas-sandbox] boom_{SUFFIX} failed in" in log

    missing = call(member, f"nothing_here_{SUFFIX}")
    assert missing["errors"][0].startswith("not_found: no function")

    huge = call(member, "convert", ["x" * 2_000_000])
    assert huge["state"] == ProcessState.FAILED and "over the limit" in huge["errors"][0], huge[
        "errors"
    ]

    # and the executor is still serving
    assert call(member, "convert", [100])["out"] == [212]


def test_deploy_refuses_code_that_does_not_compile(tmp_path):
    done = deploy(tmp_path, "def ok():\n    return 1\n\ndef bad(:\n    pass\n")
    assert done.returncode == 1
    assert "line 4" in done.stderr.lower() and "nothing deployed" in done.stderr
    assert "Traceback" not in done.stderr


def test_500_calls_none_lost(executor, member, tmp_path):
    name = f"double_{SUFFIX}"
    assert deploy(tmp_path, f"def {name}(x):\n    return x * 2\n").returncode == 0
    started = time.monotonic()
    pids = [
        submit_call(member, name, [i], maxexectime=30, maxretries=0, executortype=TYPE)["processid"]
        for i in range(500)
    ]
    submitted = time.monotonic() - started
    deadline = time.monotonic() + 50
    while time.monotonic() < deadline:
        busy = sum(
            len(member.list_processes(state, 100, TYPE))
            for state in (ProcessState.WAITING, ProcessState.RUNNING)
        )
        if not busy:
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    ends = [member.get_process(pid) for pid in pids]
    states = [p["state"] for p in ends]
    assert states.count(ProcessState.SUCCESS) + states.count(ProcessState.FAILED) == 500, {
        s: states.count(s) for s in set(states)
    }
    assert [p["out"] for p in ends] == [[2 * i] for i in range(500)]
    print(
        f"\n500 calls: submitted in {submitted:.1f}s, all done in {elapsed:.1f}s "
        f"({500 / elapsed:.0f} calls/s end to end)"
    )
    assert elapsed < 60


# Fault drills (kill -9 with calls in flight, Colonies/PostgreSQL restarts, S3 down, a killed
# sandbox child, a full temp fs, bad input) are in test_drills.py.
