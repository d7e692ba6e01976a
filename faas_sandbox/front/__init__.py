"""The HTTP front end's parts (``faas_sandbox.http_api.create_app`` assembles them).

problems   the one error body ``{"detail": {"kind", "message", ...}}`` and its handlers
body       the request-body cap (before reading) and strict JSON (no NaN/Infinity)
auth       bearer tokens file (salted hashes), per-function grants, per-token rate limit
capacity   is any executor of the type alive? (the server's executor list, cached briefly)
models     the pydantic models of the OpenAPI schema
docs       /docs from local assets only
"""
