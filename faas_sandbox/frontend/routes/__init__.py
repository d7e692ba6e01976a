"""The front end's routes, one module per resource; each builds an ``APIRouter`` for one app.

convert    ``GET /convert``: the tutorial's Celsius to Fahrenheit function
calls      ``POST /functions/{name}/call`` (sync or async), ``GET /calls/{id}`` and its logs
functions  ``GET /functions``, ``GET /functions/{name}``: what is deployed
service    ``GET /healthz``, ``/metrics``, ``/docs``
"""
