"""``faas-sandbox http``: the HTTP front end (FastAPI under uvicorn) over Colonies.

Configured from the same COLONIES_* environment as the executor; it submits with
COLONIES_PRVKEY (a member key) to executors of ``--executor-type``. The key variables are
removed from the environment once read. Endpoints and status codes: docs/http-api.md; the API
reference at /docs (local, no CDN) and /openapi.json.

Authentication: ``--tokens PATH`` (made with ``faas-sandbox token add``) requires a bearer
token on every call. Without it the front end only binds a loopback address, unless
``--no-auth`` says that is intended. Exit status: 0 stopped, 1 could not listen (address in
use, ...), 2 bad flags/settings/policy/tokens file.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket

import click

from ...colonies.client import DEFAULT_EXECUTOR_TYPE
from ..dispatch import EXIT_FAILED

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (so a busy port is one clear line, exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        click.echo(
            f"faas-sandbox: error: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True
        )
        raise SystemExit(EXIT_FAILED) from None
    return sock


@click.command("http")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--executor-type",
    default=DEFAULT_EXECUTOR_TYPE,
    show_default=True,
    help="Executor type calls are submitted to (the executor's option of that name).",
)
@click.option(
    "--policy",
    "policy_path",
    default=None,
    metavar="PATH",
    help="Policy the call limits come from [default: the built-in default policy].",
)
@click.option(
    "--tokens",
    "tokens_path",
    default=None,
    metavar="PATH",
    help="Bearer tokens file (faas-sandbox token add); required off loopback.",
)
@click.option(
    "--no-auth", is_flag=True, help="Serve a non-loopback address without tokens (anyone may call)."
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0.01),
    default=50.0,
    show_default=True,
    metavar="N",
    help="Requests a second per token (bursts 2N).",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1024),
    default=4 * 1024 * 1024,
    show_default=True,
    help="Larger request bodies are answered 413 unread.",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(1, 10_000),
    default=32,
    show_default=True,
    help="Calls in flight at once; more are answered 429.",
)
@click.option(
    "--maxwaittime",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="S",
    help="Seconds a call may wait for a busy executor; then 429.",
)
@click.option(
    "--retry-after",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    metavar="S",
    help="Retry-After seconds on 503 answers.",
)
@click.option(
    "--wait-strategy",
    type=click.Choice(["ws", "poll"]),
    default="ws",
    show_default=True,
    help="How the end of a call is detected.",
)
def http_command(
    host: str,
    port: int,
    executor_type: str,
    policy_path: str | None,
    tokens_path: str | None,
    no_auth: bool,
    rate_limit: float,
    max_body_bytes: int,
    max_inflight: int,
    maxwaittime: int,
    retry_after: int,
    wait_strategy: str,
) -> None:
    """Serve the HTTP front end: GET /convert, POST /functions/NAME/call, GET /healthz."""
    import uvicorn

    from ...colonies.backend import ColoniesBackend
    from ...errors import ColoniesError
    from ...frontend.app import ApiSettings, create_app
    from ...frontend.auth import TokenFileError, TokenStore
    from ...settings import KEY_VARIABLES
    from ..dispatch import configure_logging, usage_error
    from ._colonies import connect, load_policy

    configure_logging()
    if tokens_path is None and not no_auth and not is_loopback(host):
        usage_error(
            f"--host {host} is not a loopback address: give --tokens PATH "
            f"(faas-sandbox token add), or --no-auth to serve it open"
        )
    tokens = None
    if tokens_path is not None:
        try:
            tokens = TokenStore(tokens_path)
        except TokenFileError as exc:
            usage_error(str(exc))
        if tokens is not None and not tokens.grants():
            log.warning("tokens file %s has no tokens yet: every call is 401", tokens_path)
    policy = load_policy(policy_path)
    sock = listen(host, port)  # before anything slow: a busy port is reported at once
    client = connect()
    for variable in KEY_VARIABLES:  # the front end needs its key in memory only
        os.environ.pop(variable, None)
    backend = ColoniesBackend(client, executor_type, wait_strategy)
    try:
        backend.ping()
    except ColoniesError as exc:
        log.warning("Colonies not reachable yet (%s); /healthz answers 503 until it is", exc)
    settings = ApiSettings(
        policy=policy,
        max_inflight=max_inflight,
        maxwaittime=maxwaittime,
        retry_after_seconds=retry_after,
        max_body_bytes=max_body_bytes,
        tokens=tokens,
        rate_per_token=rate_limit,
    )
    app = create_app(backend, settings)
    log.info(
        "faas-sandbox http on http://%s:%d (executor type %s, policy %s, %s)",
        host,
        sock.getsockname()[1],
        executor_type,
        policy.name,
        f"tokens {tokens_path}" if tokens else "NO authentication",
    )
    config = uvicorn.Config(
        app,
        fd=sock.fileno(),
        log_config=None,
        timeout_graceful_shutdown=5,
        h11_max_incomplete_event_size=65536,
    )
    uvicorn.Server(config).run()
