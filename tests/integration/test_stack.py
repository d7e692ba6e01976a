"""Smoke test of the local stack itself: real PostgreSQL, MinIO and Colonies server v1.9.12,
driven through pycolonies with nothing but the variables in .dev/stack.env."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Stack  # tests/integration/conftest.py

REPO = Path(__file__).resolve().parents[2]
CONVERT_SOURCE = b"def convert(celsius):\n    return (celsius * 9/5) + 32\n"
HEX64 = re.compile(r"^[0-9a-f]{64}$")
MINIO_PORT = 9000 + int(os.environ.get("FAAS_SANDBOX_PORT_OFFSET", "0") or "0")
sys.path.insert(0, str(REPO / "scripts"))
from devstack import config, procs, serverns, services, setns  # noqa: E402  (ports, pids)


def _client() -> tuple:  # (Colonies, colonyname, colony_prvkey, executorname, prvkey)
    from pycolonies import colonies_client

    return colonies_client()


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return int(reply.status)


@pytest.mark.colonies
def test_env_file_is_private_and_complete(stack: Stack) -> None:
    assert stat.S_IMODE(stack.env_file.stat().st_mode) == 0o600
    assert stack.env_file.parent == REPO / ".dev"
    # ".dev" (no slash) also ignores a .dev symlink, which a worktree may use
    assert ".dev" in (REPO / ".gitignore").read_text().split()
    for key in ("COLONIES_COLONY_PRVKEY", "COLONIES_PRVKEY", "COLONIES_SERVER_PRVKEY"):
        assert HEX64.match(stack.env[key]), key
    assert stack.env["COLONIES_SERVER_TLS"] == "false"
    assert stack.env["AWS_S3_ENDPOINT"] == f"127.0.0.1:{MINIO_PORT}"  # host:port, no scheme
    assert os.environ["COLONIES_PRVKEY"] == stack.env["COLONIES_PRVKEY"]  # exported for tests


@pytest.mark.colonies
def test_tests_run_in_a_colony_of_their_own(stack: Stack) -> None:
    """Not `dev`, which the app started by `make run` serves (see tests/integration/conftest.py)."""
    from pycolonies import colonies_client

    dev = stack_env_file_values(stack)
    assert dev["COLONIES_COLONY_NAME"] == "dev"
    assert stack.colony_name.startswith("test-")
    for key in ("COLONIES_COLONY_PRVKEY", "COLONIES_PRVKEY"):
        assert stack.env[key] != dev[key]
    colonies, colonyname, _, executorname, prvkey = colonies_client()
    assert colonyname == stack.colony_name
    assert colonies.get_executor(colonyname, executorname, prvkey)["state"] == 1  # approved


def stack_env_file_values(stack: Stack) -> dict[str, str]:
    import json

    return dict(json.loads(stack.sh("env", "--json").stdout))


@pytest.mark.colonies
def test_services_answer_health_checks(stack: Stack) -> None:
    assert _get(f"{stack.colonies_url}/health") == 200
    assert _get(f"http://127.0.0.1:{MINIO_PORT}/minio/health/live") == 200
    status = stack.sh("status").stdout
    for service in ("postgres", "minio", "colonies"):
        assert re.search(rf"^{service} +running pid \d+, healthy$", status, re.M), status


@pytest.mark.colonies
def test_repeated_up_is_fast_and_keeps_the_keys(stack: Stack) -> None:
    before = stack.env_file.read_text()
    started = time.monotonic()
    stack.sh("up")
    assert time.monotonic() - started < 15
    assert stack.env_file.read_text() == before


@pytest.mark.colonies
def test_bootstrap_registers_with_our_client_not_pycolonies(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`up`'s registration (colony, member executor, a new owner key) needs no pycolonies: a
    colony of its own stands in for `dev`, so the shared one is left alone."""
    from devstack import bootstrap
    from faas_sandbox.colonies.client import ColoniesClient, key_id, new_prvkey

    monkeypatch.setitem(sys.modules, "pycolonies", None)  # `import pycolonies` now fails
    name = f"boot-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(config, "COLONY_NAME", name)
    server = stack.env["COLONIES_SERVER_PRVKEY"]

    def identity() -> dict[str, str]:
        colony, member = new_prvkey(), new_prvkey()
        return {
            "COLONIES_SERVER_PRVKEY": server,
            "COLONIES_COLONY_PRVKEY": colony,
            "COLONIES_COLONY_ID": key_id(colony),
            "COLONIES_PRVKEY": member,
            "COLONIES_EXECUTOR_ID": key_id(member),
        }

    def approved(keys: dict[str, str]) -> dict[str, object]:
        member = ColoniesClient.connect(
            config.HOST, config.COLONIES_PORT, False, name, keys["COLONIES_PRVKEY"]
        )
        return dict(member.get_executor(config.MEMBER_EXECUTOR_NAME))

    first, second = identity(), identity()
    owner = ColoniesClient.connect(config.HOST, config.COLONIES_PORT, False, name, server)
    try:
        bootstrap.register(first)  # creates the colony and approves its member
        seen = approved(first)
        assert (seen["executorid"], seen["state"]) == (first["COLONIES_EXECUTOR_ID"], 1)
        bootstrap.register(first)  # nothing to do
        bootstrap.register(second)  # another owner key: the colony is made again, for it
        seen = approved(second)
        assert (seen["executorid"], seen["state"]) == (second["COLONIES_EXECUTOR_ID"], 1)
        colonies = owner.rpc("getcoloniesmsg")
        assert [c["colonyid"] for c in colonies if c["name"] == name] == [
            second["COLONIES_COLONY_ID"]
        ]
    finally:
        owner.rpc("removecolonymsg", colonyname=name)


@pytest.mark.colonies
def test_colonyfs_round_trip(stack: Stack) -> None:
    colonies, colonyname, _, _, prvkey = _client()
    added = colonies.upload_data(
        colonyname, prvkey, filename="convert", data=CONVERT_SOURCE, label="/faas"
    )
    files = colonies.get_file(colonyname, prvkey, label="/faas", filename="convert")
    assert files[0]["fileid"] == added["fileid"]
    assert files[0]["checksum"] == hashlib.sha256(CONVERT_SOURCE).hexdigest()
    assert (
        colonies.download_data(colonyname, prvkey, label="/faas", filename="convert")
        == CONVERT_SOURCE
    )


@pytest.fixture
def throwaway_executor(stack: Stack) -> Iterator[tuple[str, str, str]]:
    """A freshly registered, approved executor of a type nobody else uses."""
    from crypto import Crypto  # pycolonies' top-level module

    colonies, colonyname, colony_prvkey, _, _ = _client()
    crypto = Crypto()
    prvkey = crypto.prvkey()
    name = executortype = f"stack-smoke-{uuid.uuid4().hex[:8]}"
    colonies.add_executor(
        {
            "executorid": crypto.id(prvkey),
            "executorname": name,
            "executortype": executortype,
            "colonyname": colonyname,
        },
        colony_prvkey,
    )
    colonies.approve_executor(colonyname, name, colony_prvkey)
    yield name, executortype, prvkey
    colonies.remove_executor(colonyname, name, colony_prvkey)


@pytest.mark.colonies
def test_submit_assign_close(stack: Stack, throwaway_executor: tuple[str, str, str]) -> None:
    from pycolonies import Colonies, func_spec

    colonies, colonyname, _, _, member_prvkey = _client()
    executor_name, executortype, executor_prvkey = throwaway_executor
    spec = func_spec(
        func="execute",
        args=[],
        colonyname=colonyname,
        executortype=executortype,
        kwargs={"function": "convert", "arg": "21"},
        maxexectime=30,
        maxretries=0,
    )
    submitted = colonies.submit_func_spec(spec, member_prvkey)
    assert submitted.spec.maxexectime == 30  # never 0: protocol notes 6.4

    assigned = colonies.assign(colonyname, 10, executor_prvkey)
    assert assigned.processid == submitted.processid
    assert assigned.spec.kwargs == {"function": "convert", "arg": "21"}
    colonies.close(assigned.processid, [69.8], executor_prvkey)

    done = colonies.get_process(submitted.processid, member_prvkey)
    assert done.state == Colonies.SUCCESSFUL
    assert done.output == [69.8]
    assert colonies.wait(done, 5, member_prvkey).state == Colonies.SUCCESSFUL
    assert executor_name != stack.env["COLONIES_EXECUTOR_NAME"]


@pytest.mark.colonies
@pytest.mark.parametrize("service", ["postgres", "minio", "colonies"])
def test_restarted_service_keeps_data(restore_stack: Stack, service: str) -> None:
    colonies, colonyname, _, executorname, prvkey = _client()
    colonies.upload_data(colonyname, prvkey, filename="convert", data=CONVERT_SOURCE, label="/faas")
    restore_stack.restart(service)
    assert colonies.get_executor(colonyname, executorname, prvkey)["state"] == 1
    assert (
        colonies.download_data(colonyname, prvkey, label="/faas", filename="convert")
        == CONVERT_SOURCE
    )


def _listeners() -> list[tuple[str, int, set[int]]]:
    """(address, port, pids) of every listening TCP socket in our network namespace."""
    assert shutil.which("ss"), "ss (iproute2) is needed to list listening sockets"
    out = subprocess.run(
        ["ss", "-H", "-l", "-t", "-n", "-p"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    found = []
    for line in out.splitlines():
        fields = line.split()
        host, _, port = fields[3].rpartition(":")
        found.append((host, int(port), {int(p) for p in re.findall(r"pid=(\d+)", line)}))
    return found


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:  # "*": every address
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def _stack_pids() -> dict[str, int]:
    """The stack's running processes, by the pid files and command lines stack.sh checks."""
    daemons = [
        services.postgres(),
        services.minio({}),
        services.colonies({}),
        services.forward(config.NETNS_NAME),
        *(services.app(a, {}) for a in services.APPS),
    ]
    running = {d.name: procs.running_pid(d) for d in daemons}
    return {name: pid for name, pid in running.items() if pid is not None}


@pytest.mark.colonies
def test_nothing_of_the_stack_listens_off_loopback(stack: Stack) -> None:
    """Colonies v1.9.12 binds its API, etcd and relay on every interface; as root the stack
    runs it in a network namespace of its own behind a forward on 127.0.0.1 (README, "What
    the local stack exposes"). Seen from the root namespace (as `ss -ltnp` sees it), every
    socket a stack process listens on, and every socket on a stack port, is loopback only."""
    if os.geteuid() != 0:
        pytest.skip("the server gets a network namespace of its own only when run as root")
    running = _stack_pids()
    pids = set(running.values())
    ports = {
        config.PG_PORT,
        config.COLONIES_PORT,
        config.ETCD_CLIENT_PORT,
        config.ETCD_PEER_PORT,
        config.RELAY_PORT,
        config.MINIO_PORT,
        config.MINIO_CONSOLE_PORT,
        config.HTTP_PORT,
    }
    ours = [(h, port, p) for h, port, p in _listeners() if port in ports or p & pids]
    exposed = [(h, port, p) for h, port, p in ours if not _loopback(h)]
    assert exposed == [], f"listening off loopback: {exposed}"
    assert config.NETNS, "FAAS_SANDBOX_NETNS=off: the server runs in the root namespace"
    server, forward = running["colonies"], running["colonies-forward"]
    assert setns.runs_in(server, config.NETNS) and not setns.runs_in(server, None)
    assert [(h, p) for h, p, owners in ours if server in owners] == []  # none out here
    assert ("127.0.0.1", config.COLONIES_PORT) in [(h, p) for h, p, o in ours if forward in o]
    assert ("127.0.0.1", config.PG_PORT) in [(h, p) for h, p, _ in ours]  # the parse sees it
    assert not {config.ETCD_CLIENT_PORT, config.ETCD_PEER_PORT, config.RELAY_PORT} & {
        p for _, p, _ in ours
    }


@pytest.mark.colonies
def test_up_repairs_what_a_killed_run_left_in_the_namespace(restore_stack: Stack) -> None:
    """The forward killed and the server's pid file lost (a run killed half-way): `up` stops
    the orphaned server by its pid in our namespace and starts both again."""
    if os.geteuid() != 0:
        pytest.skip("the server gets a network namespace of its own only when run as root")
    before = _stack_pids()
    orphan, forward = before["colonies"], before["colonies-forward"]
    os.kill(forward, signal.SIGKILL)
    (config.STATE_DIR / "colonies.pid").unlink()
    restore_stack.up()
    after = _stack_pids()
    assert orphan not in serverns.pids_inside(config.NETNS_NAME)
    assert serverns.pids_inside(config.NETNS_NAME) == [after["colonies"]]
    assert after["colonies-forward"] != forward
    assert _get(f"{restore_stack.colonies_url}/health") == 200


def test_ci_turns_skips_into_failures(tmp_path: Path) -> None:
    """The guard that keeps the tests above from passing CI by skipping."""
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skips.py").write_text(
        textwrap.dedent("""
        import pytest

        def test_runs():
            assert True

        def test_skips():
            pytest.skip("no stack here")

        @pytest.mark.xfail(reason="expected", strict=True)
        def test_expected_failure():
            assert False
    """)
    )

    def run(ci: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CI": ci}
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfs", str(tmp_path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    local, ci = run(""), run("true")
    assert local.returncode == 0, local.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in local.stdout
    assert ci.returncode == 1, ci.stdout
    assert "1 failed, 1 passed, 1 xfailed" in ci.stdout
    assert "skipped under CI=true" in ci.stdout
    assert "no stack here" in ci.stdout


def test_ci_fails_a_run_whose_module_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text())
    (tmp_path / "test_runs.py").write_text("def test_runs():\n    assert True\n")
    (tmp_path / "test_gone.py").write_text(
        "import pytest\npytest.skip('module not usable here', allow_module_level=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "module not usable here" in done.stdout
