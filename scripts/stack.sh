#!/usr/bin/env bash
# Local stack (PostgreSQL, MinIO, Colonies server) for faas-sandbox. See scripts/stack.py or
# `scripts/stack.sh --help`. Runs with the project venv (.venv, made by `make install`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="$here/../.venv/bin/python"
if [[ ! -x "$py" ]]; then
    case "${1:-}" in
        up|app|start|restart)
            echo "stack.sh: error: no .venv yet: run 'make install' first" >&2
            exit 1 ;;
    esac
    py="$(command -v python3)"
fi
exec "$py" "$here/stack.py" "$@"
