"""A throwaway Colonies cluster: N `colonies server start` nodes (embedded etcd each) on a
PostgreSQL instance of its own, for the node-loss test and bench/continuum.py.

Nothing here touches the shared single-node stack: the cluster has its own PostgreSQL data
directory and port (Colonies v1.9.12 always uses the database ``postgres`` with the table prefix
``PROD_``, so two servers cannot share one database), its own API/etcd/relay ports, its own
keys (generated per cluster, kept in memory and handed to children through their environment)
and its own temporary directory, removed by :meth:`Cluster.stop`. Processes are signalled only
by the pids we started.

    with Cluster(size=3) as cluster:          # ports 50281.. (API), 23891.. (etcd) ...
        env = cluster.client_env()            # COLONIES_SERVER_HOST=127.0.0.1:50281,...
        cluster.kill(0)                       # kill -9 node 1
        cluster.start_node(0)                 # and back
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config
from .procs import StackError, http_ok, port_open, say, user_credentials

COLONY = "cluster"
MEMBER_NAME, MEMBER_TYPE = "cluster-cli", "cli"  # a member identity that never gets FaaS work


@dataclass(frozen=True)
class Ports:
    api: int = 50281  # node i: api + i, etcd client/peer and relay likewise
    etcd_client: int = 23891
    etcd_peer: int = 23901
    relay: int = 23911
    postgres: int = 55433


@dataclass
class Cluster:
    size: int = 3
    ports: Ports = field(default_factory=Ports)
    bind: str = config.HOST  # where etcd listens and what peers are told (one host: loopback)
    exclusive_assign: bool = False
    db_conns: int = 20  # per node; our PostgreSQL allows 100
    extra_env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None  # where node/PostgreSQL logs go (default: the temporary dir)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.keys = {role: _new_key() for role in ("server", "colony", "member")}
        self.db_password = secrets.token_hex(16)
        self.dir = Path(tempfile.mkdtemp(prefix="faas-cluster-"))
        self.dir.chmod(0o755)  # the postgres OS user must reach its data directory inside
        self.logs = self.log_dir or self.dir
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- addresses ----------------------------------------------------------------------------
    def api_port(self, i: int) -> int:
        return self.ports.api + i

    @property
    def hosts(self) -> str:
        """COLONIES_SERVER_HOST for a client of every node, node 1 first."""
        return ",".join(f"{self.bind}:{self.api_port(i)}" for i in range(self.size))

    def client_env(self, hosts: str | None = None) -> dict[str, str]:
        """Variables for faas-sandbox and pycolonies clients of this cluster (keys included)."""
        return {
            "COLONIES_SERVER_HOST": hosts or self.hosts,
            "COLONIES_SERVER_PORT": str(self.api_port(0)),
            "COLONIES_SERVER_TLS": "false",
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": COLONY,
            "COLONIES_COLONY_PRVKEY": self.keys["colony"],
            "COLONIES_PRVKEY": self.keys["member"],
            "COLONIES_EXECUTOR_NAME": MEMBER_NAME,
        }

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        busy = [p for p in self._all_ports() if port_open(p)]
        if busy:
            raise StackError(f"cluster ports {busy} are in use (another cluster still running?)")
        self._start_postgres()
        self._run([str(config.BIN_DIR / "colonies"), "database", "create"], "dbcreate")
        for i in range(self.size):
            self.start_node(i, wait=False)
        for i in range(self.size):
            self.wait_node(i)
        self._register()
        say(
            f"cluster of {self.size} Colonies nodes up ({self.hosts}) in "
            f"{time.monotonic() - started:.1f}s"
        )

    def stop(self) -> None:
        for name in [n for n in self.procs if n.startswith("node")] + ["postgres"]:
            self._stop(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def start_node(self, i: int, wait: bool = True) -> None:
        name = f"node{i + 1}"
        peers = ",".join(
            f"node{j + 1}={self.bind}:{self.ports.etcd_peer + j}:{self.ports.relay + j}:"
            f"{self.api_port(j)}"
            for j in range(self.size)
        )
        argv = [
            str(config.BIN_DIR / "colonies"),
            "server",
            "start",
            "--insecure",
            "--port",
            str(self.api_port(i)),
            "--etcdname",
            name,
            "--etcdhost",
            self.bind,
            "--etcdclientport",
            str(self.ports.etcd_client + i),
            "--etcdpeerport",
            str(self.ports.etcd_peer + i),
            "--relayport",
            str(self.ports.relay + i),
            "--etcddatadir",
            str(self.dir / f"etcd-{name}"),
            "--initial-cluster",
            peers,
        ]
        self._spawn(name, argv, self._colonies_env())
        if wait:
            self.wait_node(i)

    def wait_node(self, i: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.bind}:{self.api_port(i)}/health"
        while not http_ok(url, timeout=1):
            proc = self.procs[f"node{i + 1}"]
            if proc.poll() is not None:
                raise StackError(f"node{i + 1} exited ({proc.returncode}); see {self.log(i)}")
            if time.monotonic() > deadline:
                raise StackError(f"node{i + 1} not healthy after {timeout:.0f}s; see {self.log(i)}")
            time.sleep(0.2)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Signal node i+1 (SIGKILL by default: no goodbye to peers or clients)."""
        proc = self.procs[f"node{i + 1}"]
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        proc.wait(timeout=30)

    def alive(self, i: int) -> bool:
        proc = self.procs.get(f"node{i + 1}")
        return proc is not None and proc.poll() is None

    def log(self, i: int) -> Path:
        return self.logs / f"node{i + 1}.log"

    def transport(self, i: int = 0) -> Any:
        """Our Colonies transport to node i+1 only (admin calls)."""
        from faas_sandbox.colonies.transport import Transport

        return Transport(self.bind, self.api_port(i))

    # -- internals ----------------------------------------------------------------------------
    def _all_ports(self) -> list[int]:
        p = self.ports
        return [p.postgres] + [
            base + i
            for i in range(self.size)
            for base in (p.api, p.etcd_client, p.etcd_peer, p.relay)
        ]

    def _colonies_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        env.update(
            TZ="UTC",
            COLONIES_DB_HOST=config.HOST,
            COLONIES_DB_PORT=str(self.ports.postgres),
            COLONIES_DB_USER="postgres",
            COLONIES_DB_PASSWORD=self.db_password,
            COLONIES_SERVER_ID=_key_id(self.keys["server"]),
            COLONIES_TLS="false",
            COLONIES_EXCLUSIVE_ASSIGN="true" if self.exclusive_assign else "false",
            COLONIES_ALLOW_EXECUTOR_REREGISTER="true",
            COLONIES_DB_MAX_OPEN_CONNS=str(self.db_conns),
            COLONIES_VERBOSE="false",
        )
        env.update(self.extra_env)
        return env

    def _start_postgres(self) -> None:
        pgdata = self.dir / "pg"
        pgdata.mkdir(mode=0o700)
        creds = user_credentials(config.PG_OS_USER)
        pwfile = self.dir / "pg.pw"
        pwfile.write_text(self.db_password + "\n")
        if creds:
            os.chown(pgdata, creds["user"], creds["group"])
            os.chown(pwfile, creds["user"], creds["group"])
        pwfile.chmod(0o600)
        self._run(
            [
                str(config.PG_BIN / "initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
                f"--pwfile={pwfile}",
            ],
            "initdb",
            env={"PATH": os.environ.get("PATH", "")},
            **creds,
        )
        pwfile.unlink()
        self._spawn(
            "postgres",
            [
                str(config.PG_BIN / "postgres"),
                "-D",
                str(pgdata),
                "-h",
                config.HOST,
                "-p",
                str(self.ports.postgres),
                "-k",
                str(pgdata),
                "-c",
                "max_connections=100",
                "-c",
                "synchronous_commit=off",
                "-c",
                "fsync=off",
            ],
            {"PATH": os.environ.get("PATH", "")},
            **creds,
        )
        deadline = time.monotonic() + 60
        ready = [
            str(config.PG_BIN / "pg_isready"),
            "-q",
            "-h",
            config.HOST,
            "-p",
            str(self.ports.postgres),
            "-t",
            "1",
        ]
        while subprocess.run(ready, check=False).returncode != 0:
            if self.procs["postgres"].poll() is not None or time.monotonic() > deadline:
                raise StackError(f"cluster PostgreSQL did not start; see {self.logs}/postgres.log")
            time.sleep(0.2)

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str], **creds: Any) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                env=dict(env),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **creds,
            )

    def _run(
        self, argv: list[str], what: str, env: Mapping[str, str] | None = None, **creds: Any
    ) -> None:
        with open(self.logs / f"{what}.log", "ab") as log:
            done = subprocess.run(
                argv,
                env=dict(env if env is not None else self._colonies_env()),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=120,
                check=False,
                **creds,
            )
        if done.returncode != 0:
            raise StackError(f"{what} failed (exit {done.returncode}); see {self.logs}/{what}.log")

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT if name == "postgres" else signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _register(self) -> None:
        """The colony, and a member identity (an executor of type "cli") that submits."""
        from faas_sandbox.colonies.client import ColoniesClient

        owner = ColoniesClient(self.transport(0), COLONY, self.keys["colony"])
        owner.rpc(
            "addcolonymsg",
            self.keys["server"],
            colony={"colonyid": _key_id(self.keys["colony"]), "name": COLONY},
        )
        owner.add_executor(
            MEMBER_NAME, _key_id(self.keys["member"]), MEMBER_TYPE, self.keys["colony"]
        )
        owner.approve_executor(MEMBER_NAME, self.keys["colony"])
        self.wait_quorum()

    def wait_quorum(self, timeout: float = 60) -> None:
        """Until an assign answers on every live node (assigns need an etcd quorum)."""
        from faas_sandbox.colonies.client import ColoniesClient
        from faas_sandbox.errors import ColoniesError

        deadline = time.monotonic() + timeout
        for i in range(self.size):
            if not self.alive(i):
                continue
            client = ColoniesClient(self.transport(i), COLONY, self.keys["member"])
            while True:
                try:
                    client.assign(1)  # a "cli" executor: no FaaS process is ever its work
                    break
                except ColoniesError as exc:
                    if time.monotonic() > deadline:
                        raise StackError(f"node{i + 1}: assign fails: {exc}") from exc
                    time.sleep(0.3)


def _new_key() -> str:
    from faas_sandbox.colonies.client import new_prvkey

    return str(new_prvkey())


def _key_id(prvkey: str) -> str:
    from faas_sandbox.colonies.client import key_id

    return str(key_id(prvkey))
