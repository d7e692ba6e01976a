"""The three stack services (postgres, minio, colonies) and the two optional app processes
(executor, http), as ``Daemon`` descriptions, plus PostgreSQL initialisation and SQL access."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping

from . import config
from .procs import (
    AMBIENT,
    Daemon,
    StackError,
    http_ok,
    port_open,
    run_logged,
    say,
    user_credentials,
)

CORE = ("postgres", "minio", "colonies")  # start order; stop in reverse
APPS = ("executor", "http")


def _base_env() -> dict[str, str]:
    env = {key: os.environ[key] for key in AMBIENT if key in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    return env


def pg_ready() -> bool:
    probe = subprocess.run(
        [
            str(config.PG_BIN / "pg_isready"),
            "-q",
            "-h",
            config.HOST,
            "-p",
            str(config.PG_PORT),
            "-t",
            "1",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def postgres() -> Daemon:
    return Daemon(
        name="postgres",
        argv=[
            str(config.PG_BIN / "postgres"),
            "-D",
            str(config.PGDATA),
            "-h",
            config.HOST,
            "-p",
            str(config.PG_PORT),
            "-k",
            str(config.PGDATA),
            "-c",
            "max_connections=120",
            "-c",
            "synchronous_commit=off",
        ],
        env=_base_env(),
        healthy=pg_ready,
        ports=(config.PG_PORT,),
        stop_signal=signal.SIGINT,  # "fast" shutdown: does not wait for colonies' pool to close
        user=config.PG_OS_USER,
        marker=f"postgres -D {config.PGDATA} ",  # not the distribution's own cluster
        start_timeout=60,
        stop_timeout=30,
    )


def minio(secrets: Mapping[str, str]) -> Daemon:
    env = _base_env()
    env.update(
        MINIO_ROOT_USER=secrets.get("MINIO_ROOT_USER", ""),
        MINIO_ROOT_PASSWORD=secrets.get("MINIO_ROOT_PASSWORD", ""),
        MINIO_UPDATE="off",
    )
    return Daemon(
        name="minio",
        argv=[
            str(config.BIN_DIR / "minio"),
            "server",
            "--quiet",
            "--address",
            f"{config.HOST}:{config.MINIO_PORT}",
            "--console-address",
            f"{config.HOST}:{config.MINIO_CONSOLE_PORT}",
            str(config.MINIO_DATA),
        ],
        env=env,
        healthy=lambda: http_ok(f"http://{config.HOST}:{config.MINIO_PORT}/minio/health/live"),
        ports=(config.MINIO_PORT, config.MINIO_CONSOLE_PORT),
        start_timeout=90,
    )


def colonies_env(keys: Mapping[str, str]) -> dict[str, str]:
    """Environment for `colonies server start` and `colonies database create`."""
    env = _base_env()
    env.update(
        TZ="UTC",  # required: the server refuses to connect to PostgreSQL without it
        COLONIES_DB_HOST=config.HOST,
        COLONIES_DB_PORT=str(config.PG_PORT),
        COLONIES_DB_USER=config.PG_USER,
        COLONIES_DB_PASSWORD=keys.get("COLONIES_DB_PASSWORD", ""),
        COLONIES_SERVER_ID=keys.get("COLONIES_SERVER_ID", ""),
        COLONIES_SERVER_PORT=str(config.COLONIES_PORT),
        COLONIES_TLS="false",
    )
    for key, default in config.COLONIES_DEFAULTS.items():
        env[key] = os.environ.get(key, default)
    return env


def colonies(keys: Mapping[str, str], netns: str | None = None) -> Daemon:
    """The server; inside ``netns`` it reaches PostgreSQL through its unix socket (in PGDATA:
    filesystem sockets are not per network namespace; local connections are trusted there,
    and only root and the postgres user can enter that directory)."""
    return Daemon(
        name="colonies",
        argv=[
            str(config.BIN_DIR / "colonies"),
            "server",
            "start",
            "--insecure",
            "--port",
            str(config.COLONIES_PORT),
            "--etcdname",
            "dev",
            "--etcdhost",
            config.HOST,
            "--etcdclientport",
            str(config.ETCD_CLIENT_PORT),
            "--etcdpeerport",
            str(config.ETCD_PEER_PORT),
            "--relayport",
            str(config.RELAY_PORT),
            "--etcddatadir",
            str(config.ETCD_DATA),
        ],
        env=colonies_env(keys),
        healthy=lambda: http_ok(f"http://{config.HOST}:{config.COLONIES_PORT}/health"),
        ports=(
            config.COLONIES_PORT,
            config.ETCD_CLIENT_PORT,
            config.ETCD_PEER_PORT,
            config.RELAY_PORT,
        ),
        start_timeout=90,
        netns=netns,
        netns_env={"COLONIES_DB_HOST": str(config.PGDATA)} if netns else {},
    )


def forward(netns: str) -> Daemon:
    """127.0.0.1:<API port> in the root namespace -> the server's API inside ``netns``.

    The system python (the forwarder needs only the standard library) and no checkout path in
    argv, so that every checkout's `up` sees the same configuration and leaves it running."""
    python = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
    listen = f"{config.HOST}:{config.COLONIES_PORT}"
    return Daemon(
        name="colonies-forward",
        argv=[
            python,
            "-E",
            "-s",
            "-m",
            "devstack.forward",
            "--listen",
            listen,
            "--netns",
            netns,
            "--to",
            f"127.0.0.1:{config.COLONIES_PORT}",
        ],
        env=_base_env(),
        healthy=lambda: port_open(config.COLONIES_PORT),
        ports=(config.COLONIES_PORT,),
        cwd=str(config.REPO / "scripts"),
        marker=f"-m devstack.forward --listen {listen} ",
        start_timeout=15,
    )


def app(name: str, client_env: Mapping[str, str]) -> Daemon:
    """`faas-sandbox executor` or `faas-sandbox http --port 8000`, with the stack env."""
    exe = str(config.VENV_BIN / "faas-sandbox")
    env = dict(os.environ)
    env.update(client_env)
    if name == "executor":
        return Daemon(
            name="executor",
            argv=[exe, "executor"],
            env=env,
            cwd=str(config.REPO),
            healthy=_alive_for(2.0),
            marker="faas-sandbox executor",
        )
    return Daemon(
        name="http",
        argv=[exe, "http", "--port", str(config.HTTP_PORT)],
        env=env,
        healthy=lambda: port_open(config.HTTP_PORT),
        ports=(config.HTTP_PORT,),
        cwd=str(config.REPO),
        marker="faas-sandbox http",
    )


def _alive_for(seconds: float) -> Callable[[], bool]:
    """A health check for processes without an endpoint: true once `seconds` have passed
    since its first call (start() polls it right after the spawn and notices an early exit)."""
    first: list[float] = []

    def check() -> bool:
        if not first:
            first.append(time.monotonic())
        return time.monotonic() - first[0] >= seconds

    return check


def app_available(command: str) -> bool:
    """True once `faas-sandbox <command>` exists (other people are still writing them)."""
    exe = config.VENV_BIN / "faas-sandbox"
    if not exe.exists():
        return False
    probe = subprocess.run(
        [str(exe), command, "--help"], capture_output=True, check=False, cwd=config.REPO, timeout=60
    )
    return probe.returncode == 0


# ---- PostgreSQL data directory and admin SQL ------------------------------------------------


def init_pgdata() -> None:
    """initdb once (as the postgres OS user when we are root)."""
    if (config.PGDATA / "PG_VERSION").exists():
        return
    say(f"initialising PostgreSQL data directory {config.PGDATA}")
    config.PGDATA.mkdir(parents=True, exist_ok=True)
    if any(config.PGDATA.iterdir()):
        raise StackError(f"{config.PGDATA} is not empty and holds no cluster; remove it first")
    as_pg_user = user_credentials(config.PG_OS_USER)
    if as_pg_user:
        os.chown(config.PGDATA, as_pg_user["user"], as_pg_user["group"])
    config.PGDATA.chmod(0o700)
    argv = [
        str(config.PG_BIN / "initdb"),
        "-D",
        str(config.PGDATA),
        "-U",
        config.PG_USER,
        "-E",
        "UTF8",
        "--locale=C",
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
    ]
    # The unix socket lives inside PGDATA (mode 0700): only root and the postgres user reach
    # it, so "trust" there is safe; TCP on 127.0.0.1 needs the password.
    log = config.LOG_DIR / "initdb.log"
    with open(log, "ab") as out:
        done = subprocess.run(
            argv,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            **as_pg_user,
        )
    if done.returncode != 0:
        raise StackError(f"initdb failed (exit {done.returncode}); see {log}")


def psql(sql: str) -> subprocess.CompletedProcess[str]:
    """Run SQL as the postgres superuser over the private unix socket."""
    return subprocess.run(
        [
            str(config.PG_BIN / "psql"),
            "-h",
            str(config.PGDATA),
            "-p",
            str(config.PG_PORT),
            "-U",
            config.PG_USER,
            "-d",
            "postgres",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def psql_ok(sql: str) -> str:
    done = psql(sql)
    if done.returncode != 0:
        raise StackError(f"SQL failed: {sql!r}: {done.stderr.strip()}")
    return done.stdout


def set_db_password(password: str) -> None:
    psql_ok(f"ALTER ROLE {config.PG_USER} WITH PASSWORD '{password}'")  # hex, no quoting issues


def db_server_ids() -> list[str] | None:
    """Server IDs stored by `colonies database create`, or None when there is no schema."""
    done = psql("SELECT server_id FROM prod_server")
    if done.returncode != 0:
        if "does not exist" in done.stderr:
            return None
        raise StackError(f"cannot read the Colonies schema: {done.stderr.strip()}")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def create_colonies_schema(keys: Mapping[str, str]) -> None:
    run_logged(
        [str(config.BIN_DIR / "colonies"), "database", "create"],
        config.LOG_DIR / "colonies-dbcreate.log",
        env=colonies_env(keys),
        what="colonies database create",
        timeout=120,
    )


def reset_colonies_schema() -> None:
    psql_ok(
        "DROP SCHEMA public CASCADE; CREATE SCHEMA public; "
        f"GRANT ALL ON SCHEMA public TO {config.PG_USER}"
    )
