"""Local faas-sandbox stack on real parts: PostgreSQL, MinIO, the Colonies server.

usage: scripts/stack.sh COMMAND [SERVICE]

  up                 install/build what is missing, start everything, bootstrap the colony and
                     keys, write .dev/stack.env (idempotent; about a second when already up)
  down               stop everything this script started (pid files in $FAAS_SANDBOX_HOME/state)
                     and delete the Colonies server's network namespace
  status             one line per service; exit 1 when a core service is not healthy
  env [--json]       print the path of the client env file (.dev/stack.env), or its
                     variables as one JSON object
  start|stop|restart SERVICE
                     one service: postgres, minio, colonies, executor, http
  app                start `faas-sandbox executor` and `faas-sandbox http` when those commands
                     exist, deploy examples/convert.py (used by `make run`)
  wipe               down, then delete service data, PostgreSQL data and .dev/ keys
                     (keeps built binaries, logs and the venv)

As root (with iproute2) the Colonies server runs in a network namespace of its own, reached
through a forward on 127.0.0.1:50080: see scripts/devstack/serverns.py. Environment:
FAAS_SANDBOX_HOME, FAAS_SANDBOX_PORT_OFFSET, FAAS_SANDBOX_PGDATA, FAAS_SANDBOX_NETNS (a name,
or `off`): see scripts/devstack/config.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from devstack import bootstrap, config, envfile, procs, serverns, services, tools
from devstack.procs import Daemon, StackError, say

SERVICES = services.CORE + services.APPS


@contextmanager
def locked() -> Iterator[None]:
    """One mutating stack.sh at a time (e.g. `make run` and a test session)."""
    config.ensure_dirs()
    with open(config.STATE_DIR / "stack.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say("waiting for another scripts/stack.sh to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def daemon(name: str, generate: bool = False) -> Daemon:
    """The service description; with generate=True, missing secrets are created first."""
    if name == "postgres":
        return services.postgres()
    if name == "minio":
        return services.minio(bootstrap.load_minio_secrets(generate))
    if name == "colonies":
        return serverns.server(bootstrap.load_keys(generate), serverns.wanted())
    return services.app(name, envfile.read(config.STACK_ENV_FILE))


def cmd_up() -> int:
    started = time.monotonic()
    tools.ensure_postgres()
    tools.ensure_colonies()
    tools.ensure_minio()
    keys = bootstrap.load_keys()
    creds = bootstrap.load_minio_secrets()
    services.init_pgdata()
    procs.ensure(services.postgres())
    services.set_db_password(keys["COLONIES_DB_PASSWORD"])
    procs.ensure(services.minio(creds))
    bootstrap.ensure_schema(keys)
    serverns.ensure(keys)
    bootstrap.register(keys)
    bootstrap.ensure_bucket(creds)
    bootstrap.write_stack_env(bootstrap.client_env(keys, creds))
    say(
        f"stack is up in {time.monotonic() - started:.1f}s: Colonies http://{config.HOST}:"
        f"{config.COLONIES_PORT}, MinIO http://{config.HOST}:{config.MINIO_PORT} (console "
        f":{config.MINIO_CONSOLE_PORT}), PostgreSQL {config.HOST}:{config.PG_PORT}"
    )
    say(f"client env: source {os.path.relpath(config.STACK_ENV_FILE)}")
    return 0


def cmd_down() -> int:
    stopped: list[str] = []
    for name in reversed(SERVICES):
        if name == "colonies":
            stopped += serverns.stop(bootstrap.load_keys(generate=False))
        elif procs.stop(daemon(name)):
            stopped.append(name)
    say("stopped " + ", ".join(stopped) if stopped else "nothing was running")
    serverns.remove()
    return 0


def _state(name: str) -> tuple[str, bool]:
    """A status line for one service, and whether it counts as healthy."""
    d = daemon(name)
    pid = procs.running_pid(d)
    if pid is None:
        foreign = [p for p in d.ports if procs.port_open(p, netns=d.netns or None)]
        return (f"stopped (port {foreign} busy: not ours)" if foreign else "stopped"), False
    if name in services.APPS:
        return f"running pid {pid}", True
    healthy = d.healthy()
    return f"running pid {pid}, " + ("healthy" if healthy else "NOT healthy"), healthy


def cmd_status() -> int:
    ok = True
    for name in SERVICES:
        line, healthy = _state(name)
        ok = ok and (healthy or name in services.APPS)
        print(f"{name:9} {line}")
        if name == "colonies":
            print(f"{'':9} {serverns.describe(bootstrap.load_keys(generate=False))}")
    print(
        f"env file  {config.STACK_ENV_FILE}"
        + ("" if config.STACK_ENV_FILE.exists() else " (missing: run scripts/stack.sh up)")
    )
    print(f"logs      {config.LOG_DIR}")
    return 0 if ok else 1


def cmd_env(as_json: bool) -> int:
    if not config.STACK_ENV_FILE.exists():
        procs.fail(f"{config.STACK_ENV_FILE} does not exist yet: run scripts/stack.sh up")
        return 1
    print(json.dumps(envfile.read(config.STACK_ENV_FILE)) if as_json else config.STACK_ENV_FILE)
    return 0


def cmd_service(action: str, name: str) -> int:
    if name not in SERVICES:
        procs.fail(f"unknown service {name!r}; choose from {', '.join(SERVICES)}")
        return 2
    d = daemon(name, generate=action != "stop")
    if action in ("stop", "restart"):
        if name == "colonies":
            serverns.stop(bootstrap.load_keys(generate=False))
        else:
            procs.stop(d)
        if action == "stop":
            return 0
    if name == "colonies" and not services.pg_ready():
        procs.fail("postgres is not running: `scripts/stack.sh start postgres` (or `up`) first")
        return 1
    if name in services.APPS and not services.app_available(name):
        procs.fail(f"`faas-sandbox {name}` does not exist yet")
        return 1
    if name == "colonies":
        serverns.ensure(bootstrap.load_keys())  # in its namespace, with the forward
    elif name in services.CORE:
        procs.ensure(d)  # also restarts it when its configuration changed
    else:
        procs.start(d)
    return 0


def cmd_app() -> int:
    """Deploy the example and start the app processes that exist; report what failed."""
    env = envfile.read(config.STACK_ENV_FILE)
    failed = []
    example = config.REPO / "examples" / "convert.py"
    if services.app_available("deploy") and example.exists():
        say("deploying examples/convert.py")
        deploy = subprocess.run(
            [str(config.VENV_BIN / "faas-sandbox"), "deploy", str(example)],
            env={**os.environ, **env},
            cwd=config.REPO,
            check=False,
        )
        if deploy.returncode != 0:
            failed.append("deploy")
    else:
        say("skipped deploy: `faas-sandbox deploy` or examples/convert.py not there yet")
    for name in services.APPS:
        if not services.app_available(name):
            say(f"skipped {name}: `faas-sandbox {name}` does not exist yet")
            continue
        try:
            procs.start(services.app(name, env))
        except StackError as err:
            procs.fail(str(err))
            failed.append(name)
    print(f"""
Try it:
  source .dev/stack.env
  {config.BIN_DIR}/colonies fs ls -l /faas      # deployed code in ColonyFS
  {config.BIN_DIR}/colonies process ps          # waiting processes in colony {config.COLONY_NAME!r}
  curl "http://{config.HOST}:{config.HTTP_PORT}/convert?celsius=21"   # -> {{"fahrenheit":[69.8]}}
  .venv/bin/faas-sandbox call convert 21        # -> 69.8, through Colonies
  curl http://{config.HOST}:{config.HTTP_PORT}/docs             # HTTP front end (OpenAPI)
  scripts/stack.sh status                       # logs: {config.LOG_DIR}
Stop everything with: make stop""")
    if failed:
        procs.fail(f"not running: {', '.join(failed)} (see above)")
    return 1 if failed else 0


def cmd_wipe() -> int:
    cmd_down()
    for path in (config.STATE_DIR, config.PGDATA, config.DEV_DIR):
        if path.exists():
            say(f"deleting {path}")
            shutil.rmtree(path)
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `stack.sh status | head` ends quietly
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    try:
        if command == "env" and rest in ([], ["--json"]):
            return cmd_env(as_json=bool(rest))
        if command == "status" and not rest:
            return cmd_status()
        simple = {"up": cmd_up, "down": cmd_down, "app": cmd_app, "wipe": cmd_wipe}
        with locked():
            if command in simple and not rest:
                return simple[command]()
            if command in ("start", "stop", "restart") and len(rest) == 1:
                return cmd_service(command, rest[0])
    except StackError as err:
        procs.fail(str(err))
        return 1
    except KeyboardInterrupt:
        return 130
    procs.fail(f"bad usage: {' '.join(argv)} (see scripts/stack.sh --help)")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
