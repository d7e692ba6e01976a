"""The HTTP front end: FastAPI over the Colonies layer. It never loads the engine.

app        ``create_app``: the routes, assembled from the parts below
problems   the one error body ``{"detail": {"kind", "message", ...}}`` and its handlers
body       the request-body cap (before reading) and strict JSON (no NaN/Infinity)
auth       bearer tokens file (salted hashes), per-function grants, per-token rate limit
capacity   is any executor of the type alive? (the server's executor list, cached briefly)
models     the pydantic models of the OpenAPI schema
docs       /docs from local assets only
"""
