"""The command line: ``dispatch`` routes ``faas-sandbox <command>`` to one module per command in
``commands/``, imported on first use, so each command loads only the layers it needs.
``main`` is the console script's entry point (``faas_sandbox.cli:main``)."""

from .dispatch import cli, main

__all__ = ["cli", "main"]
