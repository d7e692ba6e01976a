"""The executor against a hostile colony member, through the real server (issue: the executor
trusts nothing it pulls): deep specs, foreign ColonyFS metadata, a dripping store, NUL texts,
keys in /proc/<pid>/environ. Each test uses this module's own executor types and names."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import harness
import hostile_pull as hp
from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.kinds import ProcessState

pytestmark = pytest.mark.colonies
SUFFIX = uuid.uuid4().hex[:8]
TYPE = f"faas-hostile-{SUFFIX}"


@pytest.fixture(scope="module")
def member(stack) -> ColoniesClient:
    return harness.member_client()


@pytest.fixture(scope="module")
def metrics_port() -> int:
    return hp.free_port()


@pytest.fixture(scope="module")
def ex(stack, tmp_path_factory, metrics_port) -> Iterator[harness.Executor]:
    log = tmp_path_factory.mktemp("hostile") / "executor.log"
    with hp.executor(log, TYPE, "--metrics-port", str(metrics_port)) as executor:
        yield executor
    assert "Traceback" not in executor.log(), executor.log()[-3000:]


def submit(member: ColoniesClient, spec: dict) -> str:
    return harness.submit(member, spec)


def benign(member: ColoniesClient, executortype: str = TYPE) -> str:
    return submit(
        member, hp.inline_spec(hp.INLINE_CONVERT, "convert", [21], executortype=executortype)
    )


def test_deep_specs_are_failed_as_spec_at_once_and_the_executor_serves_on(member, ex, metrics_port):
    deep_args = hp.submit_deep(member, TYPE, depth=2000, where="args", maxexectime=60)
    deep_text = hp.submit_deep(member, TYPE, depth=100_000, where="kwargs", maxexectime=60)
    ok = benign(member)
    ended = hp.wait_deep(member, [deep_args, deep_text, ok], 20)
    for pid in (deep_args, deep_text):
        assert ended[pid]["state"] == ProcessState.FAILED, ended[pid]
        assert ended[pid]["errors"][0].startswith("spec: "), ended[pid]["errors"]
        assert "nested deeper than 64 levels" in ended[pid]["errors"][0]
    assert "process cannot be read" in ended[deep_args]["errors"][0]  # the whole reply
    assert ended[ok]["state"] == ProcessState.SUCCESS and ended[ok]["out"] == [69.8]
    assert ex.alive
    status, health = hp.healthz(metrics_port)
    assert (status, health["ok"]) == (200, True), health


def test_foreign_metadata_is_refused_without_contacting_it(member, ex):
    foreign = hp.LoopbackStore()
    try:
        name = f"stolen_{SUFFIX}"
        hp.add_meta(
            member,
            name,
            server="127.0.0.1",
            port=foreign.port,
            bucket="faas",
            obj="x",
            checksum=hp.sha256(foreign.body),
        )
        other_bucket = f"otherbucket_{SUFFIX}"
        s3_host, s3_port = os.environ["AWS_S3_ENDPOINT"].split(":")
        hp.add_meta(
            member,
            other_bucket,
            server=s3_host,
            port=int(s3_port),
            bucket="private",
            obj="x",
            checksum=hp.sha256(b"x"),
        )
        no_sum = f"nosum_{SUFFIX}"
        hp.add_meta(
            member,
            no_sum,
            server=s3_host,
            port=int(s3_port),
            bucket=os.environ["AWS_S3_BUCKET"],
            obj="x",
            checksum="",
        )
        pids = {
            n: submit(member, harness.spec(n, [1], executortype=TYPE))
            for n in (name, other_bucket, no_sum)
        }
        ended = harness.wait_ended(member, list(pids.values()), 20)
    finally:
        foreign.close()
    errors = {n: ended[pid]["errors"] for n, pid in pids.items()}
    assert errors[name][0].startswith(
        f"not_found: /faas/{name}: its metadata names the store "
        f"'http://127.0.0.1:{foreign.port}/faas'"
    ), errors
    assert errors[other_bucket][0].startswith(
        f"not_found: /faas/{other_bucket}: its metadata names the store"
    ), errors
    assert "refused without contacting it" in errors[name][0]
    assert "no SHA-256 checksum" in errors[no_sum][0], errors
    assert foreign.requests == 0  # nothing was sent there: no request, no signature


def test_content_failing_its_checksum_is_never_echoed(member, ex):
    name = f"real_{SUFFIX}"
    secret = f"SECRET_{SUFFIX} = 'not python"  # would show in a compile error if run
    harness.upload(name, secret.encode())
    meta = member.get_file(harness.LABEL, name)[0]
    obj = meta["ref"]["s3object"]
    forged = f"forged_{SUFFIX}"
    hp.add_meta(
        member,
        forged,
        server=obj["server"],
        port=obj["port"],
        bucket=obj["bucket"],
        obj=obj["object"],
        checksum=hp.sha256(b"something else"),
    )
    pid = submit(member, harness.spec(forged, [], executortype=TYPE))
    process = harness.wait_ended(member, [pid], 20)[pid]
    assert process["errors"][0].startswith(f"unavailable: cannot fetch function '{forged}'")
    assert "does not match its checksum" in process["errors"][0]
    assert "SECRET" not in process["errors"][0]
    assert "SECRET" not in " ".join(e["message"] for e in member.get_logs(pid))


def test_a_dripping_store_fails_calls_at_their_deadline_and_holds_nobody_else(member, tmp_path):
    drip = hp.LoopbackStore(drip_s=0.3)
    slow_type = f"{TYPE}-slow"
    env = {"AWS_S3_ENDPOINT": drip.endpoint, "AWS_S3_BUCKET": "faas"}
    try:
        with hp.executor(tmp_path / "slow.log", slow_type, env=env, concurrency=2) as slow_ex:
            for i in range(2):
                hp.add_meta(
                    member,
                    f"slow{i}_{SUFFIX}",
                    server="127.0.0.1",
                    port=drip.port,
                    bucket="faas",
                    obj=f"o{i}",
                    checksum=hp.sha256(b"x"),
                )
            started = time.monotonic()
            slow = [
                submit(
                    member,
                    harness.spec(f"slow{i}_{SUFFIX}", [1], executortype=slow_type, maxexectime=3),
                )
                for i in (0, 1)
            ]
            ok = benign(member, slow_type)
            ended: dict[str, float] = {}
            pending = set([*slow, ok])
            while pending and time.monotonic() - started < 30:
                for pid in list(pending):
                    process = harness.get(member, pid)
                    if process["state"] == ProcessState.SUCCESS or (
                        process["state"] == ProcessState.FAILED and process["errors"]
                    ):
                        ended[pid] = time.monotonic() - started
                        pending.discard(pid)
                time.sleep(0.05)
            final = harness.wait_ended(member, [*slow, ok], 5)
            assert slow_ex.alive
    finally:
        drip.close()
    for pid in slow:
        assert final[pid]["state"] == ProcessState.FAILED, final[pid]
        assert final[pid]["errors"][0].startswith("unavailable: cannot fetch function"), final[pid][
            "errors"
        ]
        assert "deadline" in final[pid]["errors"][0]
        assert ended[pid] < 3 + 2.5, ended  # its own deadline (3 s) plus delivery
    assert final[ok]["state"] == ProcessState.SUCCESS and final[ok]["out"] == [69.8]
    assert ended[ok] < 3 + 2.5, ended  # held at most until a slow call's deadline
    assert drip.requests >= 1


def test_nul_and_lone_surrogate_texts(member, ex):
    boom = (
        "def boom():\n"
        "    print('out' + chr(0) + 'put')\n"
        "    raise ValueError('bad' + chr(0) + 'text\\nFORGED executor line')\n"
    )
    sur = "def sur():\n    return 'x' + chr(0xd800)\n"
    p_boom = submit(member, hp.inline_spec(boom, "boom", [], executortype=TYPE))
    p_sur = submit(member, hp.inline_spec(sur, "sur", [], executortype=TYPE))
    ended = harness.wait_ended(member, [p_boom, p_sur], 20)
    assert ended[p_boom]["errors"] == ["runtime: ValueError: bad\\x00text\nFORGED executor line"]
    logs = " ".join(e["message"] for e in member.get_logs(p_boom))
    assert "out\\x00put" in logs
    assert ended[p_sur]["state"] == ProcessState.FAILED
    assert ended[p_sur]["errors"][0].startswith(
        "output: result is a string holding a lone surrogate"
    ), ended[p_sur]["errors"]
    harness.wait_until("the executor's log line", lambda: p_boom in ex.log(), 10)
    text = ex.log()
    assert "\x00" not in text
    assert not any(line.startswith("FORGED") for line in text.splitlines())
    assert "bad\\x00text\\x0aFORGED" in text


def test_keys_are_not_in_the_executors_proc_environ(ex):
    environ = Path(f"/proc/{ex.pid}/environ").read_bytes()
    for name in ("COLONIES_COLONY_PRVKEY", "COLONIES_PRVKEY", "AWS_S3_SECRETKEY"):
        value = os.environ.get(name, "")
        assert value and value.encode() not in environ, name
        assert f"{name}=".encode() not in environ


def test_a_spec_over_the_reply_cap_is_failed_as_spec_by_its_salvaged_id(member, ex):
    """A 20 MB kwargs.args: the assign reply is cut at 16 MiB, never parsed, and the process
    is failed by the id read from the reply's first bytes."""
    before = ex.usage()[0]
    spec = harness.raw_spec(
        {"function": "convert", "args": '["' + "x" * 20_000_000 + '"]'},
        executortype=TYPE,
        maxexectime=60,
    )
    pid = hp.submit_payload(
        member, json.dumps({"msgtype": "submitfuncspecmsg", "spec": spec}).encode()
    )
    ok = benign(member)
    ended = {pid: hp.wait_huge(member, pid, 60), **harness.wait_ended(member, [ok], 60)}
    assert ended[pid]["state"] == ProcessState.FAILED, ended[pid]["state"]
    assert ended[pid]["errors"][0].startswith(
        "spec: process cannot be read: assignprocessmsg reply over 16777216 bytes"
    ), ended[pid]["errors"]
    assert ended[ok]["out"] == [69.8]
    assert ex.usage()[0] - before < 64 * 2**20  # no copy of the 20 MB kept


def test_metadata_naming_many_endpoints_and_regions_costs_no_memory(member, ex):
    """Finding: one boto3 client per metadata-chosen endpoint/region (~12.8 MB each). Now the
    executor has one reader for its configured store; the rest is refused before any client
    or connection is made."""
    s3_host, s3_port = os.environ["AWS_S3_ENDPOINT"].split(":")
    before = ex.usage()[0]
    pids = {}
    for i in range(30):
        name = f"region{i}_{SUFFIX}"
        if i % 2:  # another endpoint each time
            hp.add_meta(
                member,
                name,
                server=f"10.255.{i}.1",
                port=9000 + i,
                bucket="faas",
                obj="x",
                checksum=hp.sha256(b"x"),
                region=f"region-{i}",
            )
        else:  # our store, another region each time: the configured region is used
            hp.add_meta(
                member,
                name,
                server=s3_host,
                port=int(s3_port),
                bucket=os.environ["AWS_S3_BUCKET"],
                obj=f"missing-{SUFFIX}",
                checksum=hp.sha256(b"x"),
                region=f"region-{i}",
            )
        pids[i] = submit(member, harness.spec(name, [1], executortype=TYPE))
    ended = harness.wait_ended(member, list(pids.values()), 60)
    for i, pid in pids.items():
        error = ended[pid]["errors"][0]
        if i % 2:
            assert error.startswith("not_found:") and "refused without contacting it" in error
        else:
            assert error.startswith("not_found:") and "gone from S3" in error, error
    assert ex.usage()[0] - before < 16 * 2**20
