"""One module per CLI command; faas_sandbox.cli.dispatch loads them lazily."""
