"""Local development stack for faas-sandbox: PostgreSQL, MinIO and the Colonies server.

Driven by ``scripts/stack.sh`` (see ``scripts/stack.py --help``). Standard library only, except
``bootstrap`` (coincurve, pycolonies, boto3 from the project venv), which is imported lazily.
"""
