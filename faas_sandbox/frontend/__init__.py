"""The HTTP front end: FastAPI over the Colonies layer. It never loads the engine.

app        ``create_app`` (and ``ApiSettings``): the app, assembled from the parts below
routes/    the routes, one module per resource: convert, calls, functions, service
calling    the way of one call: build, check capacity, pin, run in a slot, answer a failure
context    what the routes of one app share: settings, backend, gate, threads, auth, metrics
problems   the one error body ``{"detail": {"kind", "message", ...}}``, its statuses, handlers
body       the request-body cap (before reading) and strict JSON (no NaN/Infinity)
auth       bearer tokens file (salted hashes), per-function grants, per-token rate limit
capacity   is any executor of the type alive? (the server's executor list, cached briefly)
models     the pydantic models of the OpenAPI schema
docs       /docs from local assets only
"""
