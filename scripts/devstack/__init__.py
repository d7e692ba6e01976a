"""Local development stack for faas-sandbox: PostgreSQL, MinIO and the Colonies server.

Driven by ``scripts/stack.sh`` (see ``scripts/stack.py --help``). Standard library only, except
``bootstrap`` (coincurve, boto3 and faas-sandbox's own Colonies client, from the project venv),
which is imported lazily.
"""
