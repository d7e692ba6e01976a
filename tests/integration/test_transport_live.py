"""Our transport against the real Colonies server: every RPC we send, signed by our code with
each kind of key (server, colony owner, executor), is accepted; a signature that does not
belong to its payload is refused. Runs in a colony of its own, with its own executor type."""

from __future__ import annotations

import http.client
import json
import uuid
from typing import TYPE_CHECKING

import pytest

from faas_sandbox.colonies.backend import ColoniesBackend
from faas_sandbox.colonies.client import ColoniesClient, submit_call
from faas_sandbox.colonies.signing import envelope, key_id, new_prvkey
from faas_sandbox.colonies.transport import Transport
from faas_sandbox.errors import ColoniesRefused
from faas_sandbox.kinds import ExecutorState, ProcessState

if TYPE_CHECKING:
    from conftest import Stack  # tests/integration/conftest.py


@pytest.mark.colonies
def test_every_rpc_we_send_is_accepted_with_our_signatures(stack: Stack) -> None:
    env = stack.env
    transport = Transport(
        env["COLONIES_SERVER_HOST"],
        int(env["COLONIES_SERVER_PORT"]),
        env.get("COLONIES_SERVER_TLS") == "true",
    )
    suffix = uuid.uuid4().hex[:10]
    colony, etype, name = f"transport-{suffix}", f"transport-{suffix}", f"transport-{suffix}"
    owner_key, worker_key = new_prvkey(), new_prvkey()
    server = ColoniesClient(transport, colony, env["COLONIES_SERVER_PRVKEY"])
    owner = server.with_key(owner_key)
    worker = server.with_key(worker_key)

    assert "buildversion" in worker.rpc("versionmsg")  # unsigned on the server's side
    server.rpc("addcolonymsg", colony={"colonyid": key_id(owner_key), "name": colony})
    try:
        # The owner registers and approves an executor; it then is a member.
        owner.add_executor(name, key_id(worker_key), etype, owner_key)
        owner.approve_executor(name, owner_key)
        assert worker.get_executor(name)["state"] == ExecutorState.APPROVED
        assert [
            row["executorname"] for row in worker.rpc("getexecutorsmsg", colonyname=colony)
        ] == [name]
        worker.add_function(name, "execute")
        assert [f["funcname"] for f in worker.get_functions(name)] == ["execute"]

        # A call served by hand: submit, assign, log, close; its end seen over /pubsub.
        processid = submit_call(
            worker, "convert", [21.0], maxexectime=30, maxretries=0, executortype=etype
        )["processid"]
        assert (
            worker.list_processes(ProcessState.WAITING, executortype=etype)[0]["processid"]
            == processid
        )
        assigned = worker.assign(5)
        assert assigned is not None and assigned["processid"] == processid
        worker.add_log(processid, "from our transport")
        assert [e["message"] for e in worker.get_logs(processid)] == ["from our transport"]
        worker.close(processid, [69.8])
        end = ColoniesBackend(worker, etype).wait(processid, 20)  # signed /pubsub frames too
        assert end.state is ProcessState.SUCCESS
        assert worker.get_process(processid)["out"] == [69.8]

        failing = submit_call(
            worker, "convert", [1.0], maxexectime=30, maxretries=0, executortype=etype
        )["processid"]
        assert worker.assign(5)["processid"] == failing  # type: ignore[index]
        worker.fail(failing, ["runtime: from our transport"])
        assert worker.wait(failing, 10)["errors"] == ["runtime: from our transport"]
        stats = worker.rpc("getcolonystatsmsg", colonyname=colony)
        assert (stats["successfulprocesses"], stats["failedprocesses"]) == (1, 1)
        worker.rpc("removeprocessmsg", processid=failing, all=False)

        # ColonyFS metadata: add, read, list, remove.
        worker.add_file(
            {
                "fileid": "",
                "colonyname": colony,
                "label": "/faas",
                "name": "f",
                "size": 1,
                "sequencenr": 1,
                "checksum": "0" * 64,
                "checksumalg": "SHA256",
                "ref": {
                    "protocol": "s3",
                    "s3object": {
                        "server": "127.0.0.1",
                        "port": 1,
                        "tls": False,
                        "accesskey": "",
                        "secretkey": "",
                        "region": "",
                        "encryptionkey": "",
                        "encryptionalg": "",
                        "object": "o",
                        "bucket": "b",
                    },
                },
            }
        )
        assert [f["name"] for f in worker.get_file("/faas", "f")] == ["f"]
        assert [f["name"] for f in worker.rpc("getfilesmsg", colonyname=colony, label="/faas")] == [
            "f"
        ]
        worker.rpc("removefilemsg", colonyname=colony, fileid="", label="/faas", name="f")

        owner.remove_executor(name, owner_key)
        with pytest.raises(ColoniesRefused):  # removed: its key is denied from now on
            worker.get_executor(name)
    finally:
        server.rpc("removecolonymsg", colonyname=colony)


@pytest.mark.colonies
def test_a_signature_over_another_payload_is_refused(stack: Stack) -> None:
    """Negative control: the server really checks what we sign. The member's own signature,
    moved onto another message, recovers some other key: access denied."""
    env = stack.env
    colony, prvkey = env["COLONIES_COLONY_NAME"], env["COLONIES_PRVKEY"]
    good = envelope({"msgtype": "getcolonystatsmsg", "colonyname": colony}, prvkey)
    other = envelope({"msgtype": "getexecutorsmsg", "colonyname": colony}, prvkey)
    member = ColoniesClient.connect(
        env["COLONIES_SERVER_HOST"], int(env["COLONIES_SERVER_PORT"]), False, colony, prvkey
    )
    assert member.rpc("getexecutorsmsg", colonyname=colony)  # the key itself is a member's

    forged = {**other, "signature": good["signature"]}
    conn = http.client.HTTPConnection(
        env["COLONIES_SERVER_HOST"], int(env["COLONIES_SERVER_PORT"]), timeout=10
    )
    try:
        conn.request("POST", "/api", json.dumps(forged).encode())
        reply = conn.getresponse()
        body = json.loads(reply.read())
    finally:
        conn.close()
    assert reply.status == 403 and body["error"] is True

    with pytest.raises(ColoniesRefused) as refused:  # and through our client, classified
        member.rpc("getexecutorsmsg", prvkey=new_prvkey(), colonyname=colony)
    assert refused.value.status == 403
