"""The continuum bench's world (bench/continuum.py): a 3-node Colonies cluster on a PostgreSQL of
its own, a MinIO of its own, Toxiproxy, and network namespaces for executor hosts and the front
end. Every executor/front-end host reaches each node through its own Toxiproxy proxy (so
latency and cuts are per host); the bench itself talks to the cluster directly.

Nothing of the shared stack is used except the built binaries. :meth:`World.close` stops
every process started here (by pid) and removes the namespaces, the bridge and all data.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from devstack import config, tools  # noqa: E402
from devstack.cluster import Cluster, Ports  # noqa: E402
from devstack.netns import Net, Toxiproxy  # noqa: E402
from devstack.procs import http_ok, say  # noqa: E402

PORTS = Ports(api=50381, etcd_client=23991, etcd_peer=24001, relay=24011, postgres=55434)
TOXI_API_PORT = 8574
PROXY_BASE = 52000  # host h (0..), node n (0..2): PROXY_BASE + 10*h + n on the bridge address
MINIO_PORT = 9190
EXECUTOR_TYPE = "continuum"
FUNCTION_FILE = REPO / "examples" / "convert.py"
LOG_DIR = config.LOG_DIR / "continuum"


@dataclass
class World:
    executor_hosts: int = 4
    concurrency: int = 2
    net: Net = field(default_factory=Net)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def open(self) -> World:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        tools.ensure_toxiproxy()
        for old in LOG_DIR.glob("*.log"):
            old.unlink()
        self.cluster = Cluster(size=3, ports=PORTS, log_dir=LOG_DIR, db_conns=30)
        self.cluster.start()
        self.net.up()
        gw = self.net.gateway
        self.minio_creds = {
            "MINIO_ROOT_USER": "continuum",
            "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        }
        self._spawn(
            "minio",
            [
                str(config.BIN_DIR / "minio"),
                "server",
                "--quiet",
                "--address",
                f"{gw}:{MINIO_PORT}",
                "--console-address",
                "127.0.0.1:9191",
                str(self.cluster.dir / "minio"),
            ],
            {**self.minio_creds, "MINIO_UPDATE": "off", "PATH": os.environ["PATH"]},
        )
        self._spawn(
            "toxiproxy",
            [
                str(config.BIN_DIR / "toxiproxy-server"),
                "-host",
                "127.0.0.1",
                "-port",
                str(TOXI_API_PORT),
            ],
            {"PATH": os.environ["PATH"], "LOG_LEVEL": "warn"},
        )
        self.toxi = Toxiproxy(f"http://127.0.0.1:{TOXI_API_PORT}")
        self.toxi.wait()
        self.hosts = ["fe"] + [f"ex{i + 1}" for i in range(self.executor_hosts)]
        for h, host in enumerate(self.hosts):
            self.net.add(host)
            for n in range(3):
                self.toxi.proxy(
                    f"{host}-{n}",
                    f"{gw}:{PROXY_BASE + 10 * h + n}",
                    f"127.0.0.1:{self.cluster.api_port(n)}",
                )
        deadline = time.monotonic() + 60
        while not http_ok(f"http://{gw}:{MINIO_PORT}/minio/health/live"):
            if time.monotonic() > deadline:
                raise RuntimeError("continuum MinIO did not start")
            time.sleep(0.2)
        self._bucket()
        self._deploy()
        say(f"continuum ready: hosts {', '.join(f'{h}={a}' for h, a in self.net.hosts.items())}")
        return self

    def close(self) -> None:
        for name in reversed(list(self.procs)):  # executors and front end first
            self.stop(name)
        with suppress(Exception):
            self.net.teardown()
        if hasattr(self, "cluster"):
            self.cluster.stop()

    # -- environments -----------------------------------------------------------------------
    def s3_env(self) -> dict[str, str]:
        return {
            "AWS_S3_ENDPOINT": f"{self.net.gateway}:{MINIO_PORT}",
            "AWS_S3_ACCESSKEY": self.minio_creds["MINIO_ROOT_USER"],
            "AWS_S3_SECRETKEY": self.minio_creds["MINIO_ROOT_PASSWORD"],
            "AWS_S3_REGION": "",
            "AWS_S3_TLS": "false",
            "AWS_S3_BUCKET": "faas",
        }

    def first_node(self, host: str) -> int:
        """The node ``host`` talks to first: ex1 and the front end node 1, ex2 node 2, ex3
        node 3, ex4 node 1 (lists in different orders spread hosts over the cluster)."""
        return max(0, self.hosts.index(host) - 1) % 3

    def host_env(self, host: str) -> dict[str, str]:
        """A client on ``host``: the three nodes through that host's proxies, its first node
        (first_node) first."""
        h, first = self.hosts.index(host), self.first_node(host)
        nodes = ",".join(
            f"{self.net.gateway}:{PROXY_BASE + 10 * h + (first + n) % 3}" for n in range(3)
        )
        return {
            **os.environ,
            **self.cluster.client_env(nodes),
            **self.s3_env(),
            "FAAS_SANDBOX_LOG_LEVEL": "INFO",
        }

    def direct_env(self) -> dict[str, str]:
        return {**os.environ, **self.cluster.client_env(), **self.s3_env()}

    # -- the link between a host and the cluster -----------------------------------------------
    def latency(self, one_way_ms: int) -> None:
        for host in self.hosts:
            for n in range(3):
                self.toxi.latency(f"{host}-{n}", one_way_ms)

    # -- processes -------------------------------------------------------------------------------
    def start_executor(self, host: str, *flags: str) -> None:
        exe = str(REPO / ".venv" / "bin" / "faas-sandbox")
        self._spawn(
            host,
            [
                exe,
                "executor",
                "--identity",
                "self",
                "--name",
                f"cont-{host}",
                "--executor-type",
                EXECUTOR_TYPE,
                "--concurrency",
                str(self.concurrency),
                "--grace",
                "5",
                *flags,
            ],
            self.host_env(host),
            netns=host,
            ready="serving",
        )

    def start_front_end(self) -> str:
        exe = str(REPO / ".venv" / "bin" / "faas-sandbox")
        address = self.net.hosts["fe"]
        self._spawn(
            "fe",
            [
                exe,
                "http",
                "--host",
                address,
                "--port",
                "8000",
                "--executor-type",
                EXECUTOR_TYPE,
                "--max-inflight",
                "64",
                "--no-auth",
            ],  # private namespaces; the bench is the only client
            self.host_env("fe"),
            netns="fe",
        )
        url = f"http://{address}:8000"
        deadline = time.monotonic() + 60
        while not http_ok(f"{url}/healthz", timeout=5):
            if time.monotonic() > deadline:
                raise RuntimeError(f"front end not healthy; see {self.log('fe')}")
            time.sleep(0.2)
        return url

    def log(self, name: str) -> Path:
        return LOG_DIR / f"{name}.log"

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)  # `ip netns exec` execs: this pid is the program
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def _spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        netns: str | None = None,
        ready: str | None = None,
    ) -> None:
        log_path = self.log(name)
        with open(log_path, "wb") as log:
            kwargs = dict(
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=str(REPO),
            )
            self.procs[name] = (
                self.net.popen(netns, argv, **kwargs) if netns else subprocess.Popen(argv, **kwargs)
            )  # type: ignore[arg-type]
        deadline = time.monotonic() + 90
        while ready and ready not in log_path.read_text(errors="replace"):
            if self.procs[name].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start; see {log_path}")
            time.sleep(0.1)

    def _bucket(self) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=f"http://{self.net.gateway}:{MINIO_PORT}",
            aws_access_key_id=self.minio_creds["MINIO_ROOT_USER"],
            aws_secret_access_key=self.minio_creds["MINIO_ROOT_PASSWORD"],
            region_name="us-east-1",
        ).create_bucket(Bucket="faas")

    def _deploy(self) -> None:
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "faas-sandbox"), "deploy", str(FUNCTION_FILE)],
            env=self.direct_env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"deploy failed: {done.stdout}{done.stderr}")
