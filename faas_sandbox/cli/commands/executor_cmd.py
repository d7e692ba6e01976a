"""``faas-sandbox executor``: serve FaaS calls from Colonies until SIGINT/SIGTERM.

Order matters for secrets: when key variables are in the environment, the command first
re-executes itself (same pid) with them removed from the environment and handed over through an
inherited pipe instead, so they never show in ``/proc/<pid>/environ`` (removing them from
``os.environ`` does not change that file). Then the Sandbox (and so the forker every user call
is forked from) starts, before any key is read; then the keys are read from the pipe. First
signal: stop taking calls and let in-flight ones finish within
``--grace`` seconds; second signal: fail them at once. Exit status: 0 stopped cleanly, 1 stopped
on a fault (e.g. removed by the colony owner), 2 bad flags/settings/policy, 3 Colonies unreachable
while starting.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

import click

from ...colonies.client import DEFAULT_EXECUTOR_TYPE
from ...errors import PolicyError, ReplyUnreadable, SettingsError
from ...executor.registration import MODES
from ...executor.secrets import fixed_mmap_threshold, reexec_without_keys, take_keys
from ...policy import Policy
from ..dispatch import EXIT_FAILED, EXIT_UNREACHABLE, EXIT_USAGE, configure_logging, usage_error


class _Signals:
    """Signal handlers only count; whoever is running reads the count."""

    def __init__(self) -> None:
        self.count = 0
        self.target: Any = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.target is not None:
            self.target.request_stop()

    def stopped(self) -> bool:
        return self.count > 0


@click.command("executor")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Calls in flight at once, each in its own sandboxed child [default: number of cores].",
)
@click.option(
    "--policy",
    "policy_path",
    default=None,
    metavar="PATH",
    help="Policy file (limits, imports) [default: the built-in default policy].",
)
@click.option(
    "--executor-type",
    default=DEFAULT_EXECUTOR_TYPE,
    show_default=True,
    help="Colonies executor type; specs select it with conditions.executortype.",
)
@click.option(
    "--name", default=None, help="Executor name when self-registering [default: faas-<host>-<pid>]."
)
@click.option(
    "--identity",
    type=click.Choice(MODES),
    default="auto",
    show_default=True,
    help="self: register with COLONIES_COLONY_PRVKEY; operator: use COLONIES_PRVKEY "
    "+ COLONIES_EXECUTOR_NAME; auto: operator if it checks out, else self.",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 3600),
    default=10.0,
    show_default=True,
    help="Seconds in-flight calls get to finish after the first stop signal.",
)
@click.option(
    "--assign-timeout",
    type=click.IntRange(1, 300),
    default=10,
    show_default=True,
    help="Seconds per assign long-poll (each one refreshes the executor's liveness).",
)
@click.option(
    "--ahead",
    type=click.IntRange(0, 1024),
    default=None,
    help="Worker threads beyond --concurrency, so that assigns and closes overlap over slow "
    "(WAN) links. They assign ahead of a free sandbox slot only while calls are short; a call "
    "taken ahead that finds no slot in time is left for the server to requeue, or fails as "
    "timeout when it cannot be retried. 0: never ahead of a free slot "
    "[default: 2 x concurrency + 2].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Serve Prometheus /metrics and the liveness check /healthz (200 when taking "
    "work, else 503) on 127.0.0.1:PORT (0: off; the team uses 9108).",
)
@click.option(
    "--selftest",
    "run_selftest",
    is_flag=True,
    help="Before serving, run `faas-sandbox selftest` under the policy; refuse to "
    "serve (exit 1) if a required layer is missing or any probe is not denied.",
)
def executor_command(
    concurrency: int | None,
    policy_path: str | None,
    executor_type: str,
    name: str | None,
    identity: str,
    grace: float,
    assign_timeout: int,
    ahead: int | None,
    metrics_port: int,
    run_selftest: bool,
) -> None:
    """Serve FaaS calls from Colonies in sandboxed children until stopped."""
    reexec_without_keys()  # returns only when no key variable is in the environment
    fixed_mmap_threshold()
    configure_logging()
    try:
        policy = Policy.load(policy_path) if policy_path else Policy()
    except PolicyError as exc:
        usage_error(str(exc))
    if run_selftest and not _selftest_passes(policy):  # oslayer (#9)
        sys.exit(EXIT_FAILED)
    signals = _Signals()
    signal.signal(signal.SIGINT, signals.handler)
    signal.signal(signal.SIGTERM, signals.handler)
    sys.exit(
        _serve(
            policy,
            concurrency or os.cpu_count() or 1,
            executor_type,
            name,
            identity,
            grace,
            assign_timeout,
            metrics_port,
            signals,
            ahead,
        )
    )


def _selftest_passes(policy: Policy) -> bool:
    """Run the OS-layer selftest (no key has been read yet); log every probe that got out."""
    import logging

    from ...engine.isolation import describe
    from ...engine.isolation.selftest import passed, run
    from ...errors import EngineError

    log = logging.getLogger(__name__)
    try:
        report = run(policy)
    except EngineError as exc:
        log.error("selftest: the sandbox did not start: %s; not serving", exc)
        return False
    for probe in report["probes"]:
        if not probe["denied"]:
            log.error("selftest: probe %s was NOT denied: %s", probe["name"], probe["detail"])
    ok = passed(report)
    log.log(
        logging.INFO if ok else logging.ERROR,
        "selftest: %d/%d probes denied; %s%s",
        sum(p["denied"] for p in report["probes"]),
        len(report["probes"]),
        describe(report["layers"]),
        "" if ok else "; not serving",
    )
    return ok


def _serve(
    policy: Policy,
    concurrency: int,
    executor_type: str,
    name: str | None,
    mode: str,
    grace: float,
    assign_timeout: int,
    metrics_port: int,
    signals: _Signals,
    ahead: int | None = None,
) -> int:
    from ... import metrics
    from ...colonies.client import ColoniesClient
    from ...engine.sandbox import Sandbox
    from ...executor.codestore import CodeStore
    from ...executor.liveness import serve_http
    from ...executor.loop import Executor
    from ...executor.registration import Interrupted, establish, unregister
    from ...settings import KEY_VARIABLES, Settings

    with Sandbox(policy) as sandbox:  # the forker starts here, before any key is read
        try:
            settings = Settings.from_env({**os.environ, **take_keys()})
        except SettingsError as exc:
            click.echo(f"faas-sandbox: error: {exc}", err=True)
            return EXIT_USAGE
        for variable in KEY_VARIABLES:  # nothing started from here on inherits a key
            os.environ.pop(variable, None)
        client = ColoniesClient.connect(
            settings.host, settings.port, settings.tls, settings.colony_name, settings.prvkey or ""
        )
        try:
            me = establish(
                settings,
                client,
                mode=mode,
                name=name,
                executor_type=executor_type,
                stop=signals.stopped,
            )
        except SettingsError as exc:
            click.echo(f"faas-sandbox: error: {exc}", err=True)
            return EXIT_USAGE
        except Interrupted as exc:
            click.echo(f"faas-sandbox: {exc}", err=True)
            return EXIT_UNREACHABLE
        except ReplyUnreadable as exc:
            click.echo(
                f"faas-sandbox: error: colonies sent a reply we cannot read while "
                f"registering: {exc}",
                err=True,
            )
            return EXIT_UNREACHABLE
        client = client.with_key(me.prvkey)
        code = CodeStore(
            client,
            settings.s3,
            max_bytes=int(policy.ceiling("max_source_bytes")),
            pool_size=concurrency + 2,
        )
        executor = Executor(
            client,
            sandbox,
            code,
            name=me.name,
            concurrency=concurrency,
            assign_timeout=assign_timeout,
            grace=grace,
            metrics=metrics.default() if metrics_port else None,
            executor_id=me.executor_id,
            executor_type=executor_type,
            max_args_bytes=int(policy.ceiling("max_args_bytes")),
            max_call_s=policy.ceiling("wall_seconds") + 30.0,
            ahead=ahead,
        )
        if metrics_port:
            metrics.default()
            serve_http(metrics_port, executor.liveness.verdict)
        signals.target = executor
        for _ in range(signals.count):  # signals that came while registering
            executor.request_stop()
        status = 0
        try:
            status = executor.run()
        finally:
            unregister(client, me, settings.colony_prvkey, lambda: signals.count >= 2)
    return status
