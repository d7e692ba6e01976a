"""The ``faas-sandbox`` command line: a click group whose commands load lazily.

Exit codes (constants, so scripts can rely on them): 0 ok, 1 the call or check failed,
2 usage error (bad flag, missing file, bad JSON, invalid policy), 3 Colonies unreachable.
Usage errors print exactly one line on stderr and never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Any

import click

from ..devenv import load_stack_env

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# command name -> "module:attribute" under faas_sandbox.cli.commands; imported on first use so
# that `faas-sandbox exec` never pays for FastAPI or pycolonies.
COMMANDS: dict[str, str] = {
    "call": "call_cmd:call_command",
    "deploy": "deploy_cmd:deploy_command",
    "exec": "exec_cmd:exec_command",
    "executor": "executor_cmd:executor_command",
    "functions": "functions_cmd:functions_command",
    "http": "http_cmd:http_command",
    "logs": "logs_cmd:logs_command",
    "policy": "policy_cmd:policy_group",
    "result": "result_cmd:result_command",
    "selftest": "selftest_cmd:selftest_command",
    "status": "status_cmd:status_command",
    "token": "token_cmd:token_group",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        module = importlib.import_module(f"faas_sandbox.cli.commands.{module_name}")
        command: click.Command = getattr(module, attr)
        return command


def configure_logging(level: str | None = None) -> None:
    """The only place that installs log handlers."""
    level = level or os.environ.get("FAAS_SANDBOX_LOG_LEVEL", "INFO")
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="faas-sandbox")
def cli() -> None:
    """Run untrusted Python functions on ColonyOS, one fresh sandboxed process per call."""


def usage_error(message: str) -> None:
    """Print one line on stderr and exit 2."""
    click.echo(f"faas-sandbox: error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def main(argv: list[str] | None = None) -> Any:
    if not (sys.argv[1:] if argv is None else argv):  # no arguments: the help, not an error
        click.echo(cli.get_help(click.Context(cli, info_name="faas-sandbox")))
        sys.exit(EXIT_OK)
    load_stack_env(os.environ)  # a checkout's local dev stack when no COLONIES_* is set
    try:
        return cli.main(args=argv, prog_name="faas-sandbox", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("faas-sandbox: aborted", err=True)
        sys.exit(EXIT_FAILED)
    except click.ClickException as exc:
        usage_error(exc.format_message().replace("\n", " "))
    except KeyboardInterrupt:
        sys.exit(130)
