"""The sandbox engine's sub-packages (see :mod:`faas_sandbox.engine.isolation`)."""
