"""`faas-sandbox call / functions / logs / status` on the real stack, with our own executor."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faas_live import CONVERT_SOURCE, deploy, executor, free_port, run_cli, unique

pytestmark = pytest.mark.colonies

SUFFIX = unique("")
GREET = f"greet_{SUFFIX}"
EVIL = f"evil_{SUFFIX}"
GREET_V1 = f"def {GREET}(name):\n    return 'hi ' + name\n"
GREET_V2 = (
    f"def {GREET}(name, punct='!'):\n    print('greeting', name)\n"
    f"    return {{'greeting': 'hello ' + name + punct}}\n"
)


@pytest.fixture(scope="module")
def executor_type(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    deploy("convert", CONVERT_SOURCE)
    deploy(GREET, GREET_V1)
    deploy(GREET, GREET_V2)  # two revisions; the latest is served
    deploy(EVIL, f"def {EVIL}():\n    return open('/etc/passwd').read()\n")
    etype = unique("faas-it-")
    with executor(etype, tmp_path_factory.mktemp("exec") / "executor.log"):
        yield etype


def test_call_prints_the_output(executor_type: str) -> None:
    result = run_cli("call", "convert", "21", "--executor-type", executor_type)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "69.8\n"


def test_call_parses_json_args_and_kwargs_and_prints_json(executor_type: str) -> None:
    result = run_cli(
        "call",
        GREET,
        "ann",
        "--kwargs",
        '{"punct": "?"}',
        "--json",
        "--executor-type",
        executor_type,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["ok"] is True
    assert body["output"] == [{"greeting": "hello ann?"}]
    assert body["error"] is None
    assert len(body["processid"]) == 64


def test_call_failure_is_one_line_and_exit_1(executor_type: str) -> None:
    result = run_cli("call", EVIL, "--executor-type", executor_type)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert f"call {EVIL} failed: forbidden:" in result.stderr
    assert "Traceback" not in result.stderr


def test_call_unreachable_is_exit_3(stack: Any) -> None:
    env = {**os.environ, "COLONIES_SERVER_PORT": str(free_port())}
    result = run_cli("call", "convert", "1", env=env)
    assert result.returncode == 3
    assert result.stderr.count("\n") == 1
    assert "unreachable" in result.stderr


def test_no_wait_prints_the_process_id_and_logs_shows_its_output(executor_type: str) -> None:
    result = run_cli("call", GREET, "bob", "--no-wait", "--executor-type", executor_type)
    assert result.returncode == 0, result.stderr
    processid = result.stdout.strip()
    assert len(processid) == 64
    deadline = time.monotonic() + 30
    while True:
        logs = run_cli("logs", processid)
        assert logs.returncode == 0, logs.stderr
        if "greeting bob" in logs.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "greeting bob\n" in logs.stdout


def test_logs_of_an_unknown_process_is_one_line_and_exit_1(stack: Any) -> None:
    result = run_cli("logs", "0" * 64)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_functions_lists_name_size_and_revisions(executor_type: str) -> None:
    result = run_cli("functions", "--json")
    assert result.returncode == 0, result.stderr
    functions = {f["name"]: f for f in json.loads(result.stdout)}
    assert functions[GREET]["revisions"] == 2
    assert functions[GREET]["size"] == len(GREET_V2.encode())
    assert functions["convert"]["revisions"] >= 1
    assert functions[GREET]["deployed_at"].startswith("20")
    table = run_cli("functions")
    assert table.returncode == 0
    line = next(row for row in table.stdout.splitlines() if row.startswith(GREET))
    assert line.split()[1:3] == [str(len(GREET_V2.encode())), "2"]


def _bucket() -> Any:
    import boto3

    env = os.environ
    return boto3.client(
        "s3",
        endpoint_url=f"http://{env['AWS_S3_ENDPOINT']}",
        aws_access_key_id=env["AWS_S3_ACCESSKEY"],
        aws_secret_access_key=env["AWS_S3_SECRETKEY"],
        region_name="us-east-1",
    )


def test_functions_rm_deletes_the_s3_objects_deploy_stored(stack: Any, tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    from faas_sandbox.colonies.client import ColoniesClient
    from faas_sandbox.colonies.lifecycle import history
    from faas_sandbox.names import function_name

    env = os.environ
    member = ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        False,
        env["COLONIES_COLONY_NAME"],
        env["COLONIES_PRVKEY"],
    )
    name = function_name(unique("gone_"))
    # Given two revisions: one written as the tutorial does (pycolonies), one by our deploy
    deploy(name, f"def {name}():\n    return 1\n")
    path = tmp_path / "f.py"
    path.write_text(f"def {name}():\n    return 2\n")
    deployed = run_cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr
    revisions = history(member, name)
    keys = [r.meta["ref"]["s3object"]["object"] for r in revisions]
    bucket, s3 = env["AWS_S3_BUCKET"], _bucket()
    assert len(set(keys)) == 2
    for key in keys:
        s3.head_object(Bucket=bucket, Key=key)  # both objects are there
    # When the function is removed
    removed = run_cli("functions", "rm", name)
    # Then its metadata and both objects are gone
    assert removed.returncode == 0, removed.stderr
    assert history(member, name) == []
    for key in keys:
        with pytest.raises(ClientError) as gone:
            s3.head_object(Bucket=bucket, Key=key)
        assert gone.value.response["Error"]["Code"] == "404"
    assert removed.stdout == f"removed {name} (2 revision(s), 2 S3 object(s))\n"
    again = run_cli("functions", "rm", name)
    assert again.returncode == 1 and "no function" in again.stderr


def test_status_shows_our_executor_and_process_counts(executor_type: str) -> None:
    run_cli("call", "convert", "1", "--executor-type", executor_type)
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["colony"] == os.environ["COLONIES_COLONY_NAME"]
    ours = [e for e in status["executors"] if e["type"] == executor_type]
    assert [e["state"] for e in ours] == ["approved"]
    assert status["processes"]["successful"] >= 1
    assert set(status["processes"]) == {"waiting", "running", "successful", "failed", "cancelled"}
    text = run_cli("status")
    assert text.returncode == 0
    assert executor_type in text.stdout
    assert "processes: waiting" in text.stdout
