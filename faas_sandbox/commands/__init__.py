"""One module per CLI command; faas_sandbox.cli loads them lazily."""
