"""Cluster node lists and failover, against small local HTTP stand-ins for Colonies nodes."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from faas_sandbox.colonies.client import ColoniesClient
from faas_sandbox.colonies.nodes import Node, NodeList, parse_nodes
from faas_sandbox.errors import ColoniesUnreachable, SettingsError
from faas_sandbox.settings import Settings

KEY = "ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05"


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("localhost", [Node("localhost", 50080)]),
        ("a:50281,b:50282, c", [Node("a", 50281), Node("b", 50282), Node("c", 50080)]),
        ("[::1]:50281,[fe80::1]", [Node("::1", 50281), Node("fe80::1", 50080)]),
    ],
)
def test_parse_nodes(text, nodes):
    assert list(parse_nodes(text, 50080)) == nodes


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a,,b", "empty entry"),
        ("a:", "bad port"),
        ("a:x", "bad port"),
        ("a:70000", "out of range"),
        ("::1", "IPv6"),
        ("[::1", "IPv6"),
        ("a:1,a:1", "listed twice"),
        ("http://a", "bad"),
        ("a b:1", "bad host"),
    ],
)
def test_parse_nodes_names_the_bad_entry(text, error):
    with pytest.raises(ValueError, match=error):
        parse_nodes(text, 50080)


def test_settings_refuse_a_bad_node_list():
    env = {
        "COLONIES_SERVER_HOST": "a:1,a:1",
        "COLONIES_SERVER_PORT": "50080",
        "COLONIES_COLONY_NAME": "dev",
    }
    with pytest.raises(SettingsError, match="COLONIES_SERVER_HOST: a:1 is listed twice"):
        Settings.from_env(env)
    env["COLONIES_SERVER_HOST"] = "a:50281, b:50282"
    assert Settings.from_env(env).host == "a:50281, b:50282"


def test_concurrent_failures_of_one_node_switch_once(caplog):
    nodes = NodeList([Node("a", 1), Node("b", 2), Node("c", 3)])
    caplog.set_level(logging.WARNING, logger="faas_sandbox.colonies.nodes")
    threads = [threading.Thread(target=nodes.failed, args=(0, "reset")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert nodes.current() == (1, Node("b", 2)) and nodes.switches == 1
    assert [r.getMessage() for r in caplog.records] == [
        "colonies node a:1 failed (reset); switching to b:2"
    ]
    nodes.failed(1, "refused")
    nodes.failed(2, "refused")
    assert nodes.current()[0] == 0  # round robin


class Node_(BaseHTTPRequestHandler):  # noqa: N801
    """A Colonies node stand-in: echoes, or drops the connection for message types in
    ``state["drop"]`` (a node dying after it read the request)."""

    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        msg = json.loads(base64.b64decode(body["payload"]))
        state = self.server.state  # type: ignore[attr-defined]
        state["seen"].append(msg["msgtype"])
        if msg["msgtype"] in state.get("no_quorum", ()):
            data = json.dumps(
                {
                    "payloadtype": "error",
                    "error": True,
                    "payload": base64.b64encode(
                        json.dumps({"status": 500, "message": "context deadline exceeded"}).encode()
                    ).decode(),
                }
            )
            self.send_response(500)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())
            return
        if msg["msgtype"] in state["drop"]:
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        data = json.dumps(
            {
                "payloadtype": msg["msgtype"],
                "error": False,
                "payload": base64.b64encode(json.dumps({"node": state["name"]}).encode()).decode(),
            }
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data.encode())


@pytest.fixture
def cluster():
    servers = []
    for name in ("n1", "n2"):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Node_)
        httpd.daemon_threads = True
        httpd.state = {"name": name, "seen": [], "drop": set()}  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
        servers.append(httpd)
    yield servers
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def _client(*ports: int) -> ColoniesClient:
    hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
    return ColoniesClient.connect(hosts, 50080, False, "dev", KEY)


def test_a_refused_node_is_skipped_for_every_request_even_a_submit(cluster, caplog):
    caplog.set_level(logging.WARNING, logger="faas_sandbox.colonies.nodes")
    dead = _free_port()
    client = _client(dead, cluster[0].server_address[1])
    reply = client.submit({"maxexectime": 5, "conditions": {}})
    assert reply == {"node": "n1"}  # never sent to the dead node, so sending it on is safe
    assert cluster[0].state["seen"] == ["submitfuncspecmsg"]
    assert client.get_process("p") == {"node": "n1"}  # stays on the node that works
    assert client.transport.url.endswith(f":{cluster[0].server_address[1]}/api")
    assert [r.getMessage() for r in caplog.records] == [
        f"colonies node 127.0.0.1:{dead} failed (connection refused); switching to "
        f"127.0.0.1:{cluster[0].server_address[1]}"
    ]


def test_a_submit_that_may_have_arrived_is_not_sent_again(cluster):
    first, second = cluster
    first.state["drop"].add("submitfuncspecmsg")
    client = _client(first.server_address[1], second.server_address[1])
    with pytest.raises(ColoniesUnreachable):
        client.submit({"maxexectime": 5, "conditions": {}})
    assert first.state["seen"] == ["submitfuncspecmsg"] and second.state["seen"] == []
    assert client.get_process("p") == {"node": "n2"}  # but the client moved on


def test_a_read_that_may_have_arrived_is_sent_to_the_next_node(cluster):
    first, second = cluster
    first.state["drop"].add("getprocessmsg")
    client = _client(first.server_address[1], second.server_address[1])
    assert client.get_process("p") == {"node": "n2"}
    assert second.state["seen"] == ["getprocessmsg"]


def test_a_broken_long_poll_is_left_to_the_caller_who_then_polls_the_next_node(cluster):
    first, second = cluster
    first.state["drop"].add("assignprocessmsg")
    client = _client(first.server_address[1], second.server_address[1])
    with pytest.raises(ColoniesUnreachable):
        client.assign(1)
    assert second.state["seen"] == []
    assert client.assign(1) == {"node": "n2"}


def test_every_node_down_is_unreachable_after_one_round(cluster):
    client = _client(_free_port(), _free_port())
    with pytest.raises(ColoniesUnreachable, match="connection refused"):
        client.get_process("p")
    assert client.transport.nodes.switches == 2  # one round: each node tried once


def test_while_no_node_answers_switches_are_counted_not_logged(caplog):
    nodes = NodeList([Node("a", 1), Node("b", 2)])
    caplog.set_level(logging.WARNING, logger="faas_sandbox.colonies.nodes")
    for _ in range(5):  # all down: round and round
        nodes.failed(nodes.current()[0], "refused")
    nodes.answered()
    nodes.answered()
    assert [r.getMessage() for r in caplog.records] == [
        "colonies node a:1 failed (refused); switching to b:2",
        "colonies node b:2 answers (after 4 more switches while no node answered)",
    ]
    assert nodes.switches == 5


def test_a_node_without_etcd_quorum_is_unreachable_and_left(cluster, caplog):
    """A node cut off from its etcd majority answers assigns with "context deadline
    exceeded": not a verdict (retry later), and the next node may have a majority."""
    first, second = cluster
    first.state["no_quorum"] = {"assignprocessmsg"}
    caplog.set_level(logging.WARNING, logger="faas_sandbox.colonies.nodes")
    client = _client(first.server_address[1], second.server_address[1])
    with pytest.raises(ColoniesUnreachable, match="reach its etcd quorum: context deadline"):
        client.assign(1)
    assert second.state["seen"] == []  # not re-sent: the caller retries
    assert client.assign(1) == {"node": "n2"}
    assert "failed (no etcd quorum); switching to" in caplog.text
