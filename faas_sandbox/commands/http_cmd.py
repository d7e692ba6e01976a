"""``faas-sandbox http``: the HTTP front end (FastAPI under uvicorn) over Colonies.

Configured from the same COLONIES_* environment as the executor; it submits with
COLONIES_PRVKEY (a member key) to executors of ``--executor-type``. The key variables are
removed from the environment once read. Endpoints and status codes: faas_sandbox/http_api.py;
OpenAPI docs at /docs. Exit status: 0 stopped, 2 bad flags/settings/policy.
"""

from __future__ import annotations

import logging
import os

import click

from ..colonies import DEFAULT_EXECUTOR_TYPE

log = logging.getLogger(__name__)


@click.command("http")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--executor-type", default=DEFAULT_EXECUTOR_TYPE, show_default=True,
              help="Executor type calls are submitted to (the executor's option of that name).")
@click.option("--policy", "policy_path", default=None, metavar="PATH",
              help="Policy the call limits come from [default: the built-in default policy].")
@click.option("--max-inflight", type=click.IntRange(1, 10_000), default=32, show_default=True,
              help="Calls in flight at once; more are answered 429.")
@click.option("--maxwaittime", type=click.IntRange(min=1), default=10, show_default=True,
              metavar="S", help="Seconds a call may wait for an executor; then 503.")
@click.option("--retry-after", type=click.IntRange(min=1), default=5, show_default=True,
              metavar="S", help="Retry-After seconds on 503 answers.")
@click.option("--wait-strategy", type=click.Choice(["ws", "poll"]), default="ws",
              show_default=True, help="How the end of a call is detected.")
def http_command(host: str, port: int, executor_type: str, policy_path: str | None,
                 max_inflight: int, maxwaittime: int, retry_after: int,
                 wait_strategy: str) -> None:
    """Serve the HTTP front end: GET /convert, POST /functions/NAME/call, GET /healthz."""
    import uvicorn

    from ..cli import configure_logging
    from ..colonies_backend import ColoniesBackend
    from ..errors import ColoniesError
    from ..http_api import ApiSettings, create_app
    from ..settings import KEY_VARIABLES
    from ._colonies import connect, load_policy

    configure_logging()
    policy = load_policy(policy_path)
    client = connect()
    for variable in KEY_VARIABLES:  # the front end needs its key in memory only
        os.environ.pop(variable, None)
    backend = ColoniesBackend(client, executor_type, wait_strategy)
    try:
        backend.ping()
    except ColoniesError as exc:
        log.warning("Colonies not reachable yet (%s); /healthz answers 503 until it is", exc)
    settings = ApiSettings(policy=policy, max_inflight=max_inflight, maxwaittime=maxwaittime,
                           retry_after_seconds=retry_after)
    app = create_app(backend, settings)
    log.info("faas-sandbox http on http://%s:%d (executor type %s, policy %s)", host, port,
             executor_type, policy.name)
    uvicorn.run(app, host=host, port=port, log_config=None, timeout_graceful_shutdown=5)
