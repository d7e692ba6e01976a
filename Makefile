# faas-sandbox developer entry points. `make` (or `make help`) lists the targets.
# The local stack (PostgreSQL, MinIO, Colonies server) is managed by scripts/stack.sh;
# its state, logs and built tools live in ~/.cache/faas-sandbox, secrets in .dev/.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STACK := scripts/stack.sh
# Default: all of tests/. With CI=true (as in .ci/run) a skipped test fails the run.
PYTEST_ARGS ?=

.PHONY: help install check lint typecheck test test-fast run stop status bench bench-e2e \
	bench-wait soak continuum clean wipe

help: ## List the targets
	@echo "usage: make TARGET"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

install: $(VENV)/.install-stamp ## Create .venv if missing and pip install -e '.[test,lint]'

$(VENV)/.install-stamp: pyproject.toml
	@test -x $(BIN)/python || { echo "==> creating $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "==> $(BIN)/pip install -e '.[test,lint]'"
	@$(BIN)/python -m pip install --quiet --editable '.[test,lint]'
	@touch $@

check: lint typecheck ## What must pass before a change lands (CI runs it first): lint, typecheck

lint: install ## ruff check and ruff format --check (settings in pyproject.toml)
	$(BIN)/ruff check faas_sandbox tests scripts bench
	$(BIN)/ruff format --check faas_sandbox tests scripts bench

typecheck: install ## mypy --strict on the package (settings in pyproject.toml)
	$(BIN)/mypy

test: install ## Start the stack, run all tests (PYTEST_ARGS='tests/unit -x' narrows them)
	@$(STACK) up
	$(BIN)/pytest -q $(or $(PYTEST_ARGS),tests/)

test-fast: install ## Unit and sandbox tests only, no stack: the edit loop (about a minute)
	$(BIN)/pytest -q -m "not colonies" tests/unit tests/sandbox

run: install ## Start the stack (as root: Colonies in a network namespace of its own), executor and HTTP front end (port 8000)
	@$(STACK) up
	@$(STACK) app

stop: ## Stop the executor, the HTTP front end and the stack; delete the server's network namespace
	@$(STACK) down

status: ## Show which services run and where the logs are
	@$(STACK) status

bench: install ## Run the engine benchmark (bench/bench_engine.py)
	@test -f bench/bench_engine.py || { echo "bench/bench_engine.py does not exist yet" >&2; exit 1; }
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_element.py

bench-e2e: install ## End-to-end benchmark on the stack: tutorial vs null vs ours (BENCH_ARGS=--quick)
	@$(STACK) up
	$(BIN)/python bench/bench_e2e.py $(BENCH_ARGS)

bench-wait: install ## How fast the front end sees a call end (WebSocket vs polling)
	@$(STACK) up
	$(BIN)/python bench/wait_latency.py

soak: install ## Soak + fault drills on the stack: thousands of mixed calls, 1/2/4 executors (SOAK_ARGS=--quick)
	@$(STACK) up
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

continuum: install ## 3-node Colonies cluster, executors on network-namespace hosts, WAN latency, drills (root; CONTINUUM_ARGS=--quick)
	@$(STACK) up
	cd bench && ../$(BIN)/python continuum.py $(CONTINUUM_ARGS)

clean: ## Remove Python caches and test leftovers (keeps the stack, its data and .venv)
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache build dist .coverage .coverage.*

wipe: ## Stop the stack and delete its data and .dev/ keys (keeps built tools and .venv)
	@$(STACK) wipe
