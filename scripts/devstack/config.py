"""Where everything lives, which versions we pin, and which ports we use.

All state is outside the repository, under ``$FAAS_SANDBOX_HOME`` (default
``~/.cache/faas-sandbox``): ``bin/`` built tools, ``state/`` pid files and service data,
``logs/`` service and build logs. Generated secrets go to ``<repo>/.dev/`` (gitignored).

PostgreSQL data is the one exception when running as root: the server must run as the
``postgres`` OS user, which cannot traverse ``/root`` (mode 700), so its data directory is
``/var/lib/postgresql/faas-sandbox`` (``faas-sandbox-<offset>`` with a port offset; override
with ``FAAS_SANDBOX_PGDATA``).

A second stack on the same machine (e.g. to try changes to these scripts without touching
the one everybody uses) needs a checkout of its own (``.dev/`` is per checkout) and::

    FAAS_SANDBOX_HOME=~/.cache/faas-sandbox-2 FAAS_SANDBOX_PORT_OFFSET=300 scripts/stack.sh up

The Colonies server's network namespace (devstack/serverns.py) is named after its API port
(``faasdev-50080``); ``FAAS_SANDBOX_NETNS`` names another one, or ``off`` runs the server in
the root namespace as an unprivileged user would.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# Pinned versions. MinIO has no tags on the Go proxy that `go install` accepts here, so we pin
# the pseudo-version that `go install github.com/minio/minio@latest` resolved (2026-02-12).
COLONIES_MODULE = "github.com/colonyos/colonies"
COLONIES_VERSION = "v1.9.12"
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"  # WAN latency and cuts (bench/continuum)
TOXIPROXY_VERSION = "v2.5.0"
PG_MAJOR = "15"

# Ports (docs/team-notes.md). FAAS_SANDBOX_PORT_OFFSET shifts every one of them, for a second
# stack on the same machine (with a checkout and FAAS_SANDBOX_HOME of its own): e.g. 100.
HOST = "127.0.0.1"
PORT_OFFSET = int(os.environ.get("FAAS_SANDBOX_PORT_OFFSET", "0") or "0")
if not 0 <= PORT_OFFSET <= 65535 - 55432:
    raise SystemExit(f"FAAS_SANDBOX_PORT_OFFSET={PORT_OFFSET}: expected 0..{65535 - 55432}")
PG_PORT = 55432 + PORT_OFFSET
COLONIES_PORT = 50080 + PORT_OFFSET
ETCD_CLIENT_PORT = 23790 + PORT_OFFSET
ETCD_PEER_PORT = 23800 + PORT_OFFSET
RELAY_PORT = 23810 + PORT_OFFSET
MINIO_PORT = 9000 + PORT_OFFSET
MINIO_CONSOLE_PORT = 9001 + PORT_OFFSET
HTTP_PORT = 8000 + PORT_OFFSET
# Not "faas-...": the continuum drills remove every namespace named faas-* (devstack/netns.py).
_NETNS = os.environ.get("FAAS_SANDBOX_NETNS", "")
NETNS_NAME = _NETNS if _NETNS not in ("", "off") else f"faasdev-{COLONIES_PORT}"
NETNS: str | None = None if _NETNS == "off" else NETNS_NAME  # None: the server is not hidden
if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", NETNS_NAME):
    raise SystemExit(f"FAAS_SANDBOX_NETNS={NETNS!r}: expected a namespace name or 'off'")

COLONY_NAME = "dev"
MEMBER_EXECUTOR_NAME = "dev-cli"  # the shared member identity (COLONIES_PRVKEY)
MEMBER_EXECUTOR_TYPE = "cli"  # never "faas-executor": it must not be handed FaaS work
S3_BUCKET = "faas"
PG_USER = "postgres"  # the colonies server always uses the database named "postgres"

REPO = Path(__file__).resolve().parents[2]
DEV_DIR = REPO / ".dev"
KEYS_FILE = DEV_DIR / "colonies.env"
MINIO_FILE = DEV_DIR / "minio.env"
STACK_ENV_FILE = DEV_DIR / "stack.env"
VENV_BIN = REPO / ".venv" / "bin"

HOME = Path(os.environ.get("FAAS_SANDBOX_HOME", "~/.cache/faas-sandbox")).expanduser()
BIN_DIR = HOME / "bin"
STATE_DIR = HOME / "state"
LOG_DIR = HOME / "logs"
BUILD_DIR = HOME / "build"

IS_ROOT = os.geteuid() == 0
PG_BIN = Path(os.environ.get("FAAS_SANDBOX_PG_BIN", f"/usr/lib/postgresql/{PG_MAJOR}/bin"))
PG_OS_USER = "postgres" if IS_ROOT else None  # postgres refuses to run as root
PGDATA = Path(
    os.environ.get(
        "FAAS_SANDBOX_PGDATA",
        f"/var/lib/postgresql/faas-sandbox{f'-{PORT_OFFSET}' if PORT_OFFSET else ''}"
        if IS_ROOT
        else str(STATE_DIR / "pg"),
    )
)
MINIO_DATA = STATE_DIR / "minio"
ETCD_DATA = STATE_DIR / "colonies-etcd"

# Colonies server settings a caller may override for one start (e.g. a fault drill running
# `COLONIES_STALE_EXECUTOR_DURATION=5 scripts/stack.sh restart colonies`).
COLONIES_DEFAULTS = {
    # Distributed assign (one SQL UPDATE ... SKIP LOCKED) on our single node: the assign reply
    # carries the real execdeadline, processes asking for storage are not skipped, and assigns
    # do not depend on etcd leadership right after a restart (protocol notes 4.5).
    "COLONIES_EXCLUSIVE_ASSIGN": "false",
    # Re-adding an executor name reuses the row (PENDING again) instead of a 400.
    "COLONIES_ALLOW_EXECUTOR_REREGISTER": "true",
    "COLONIES_STALE_EXECUTOR_DURATION": "600",
    "COLONIES_CLEANUP_INTERVAL": "60",
    "COLONIES_DB_MAX_OPEN_CONNS": "50",  # PostgreSQL runs with max_connections=120
    "COLONIES_VERBOSE": "false",
}


def ensure_dirs() -> None:
    for d in (BIN_DIR, STATE_DIR, LOG_DIR):
        d.mkdir(parents=True, exist_ok=True)
    DEV_DIR.mkdir(mode=0o700, exist_ok=True)
