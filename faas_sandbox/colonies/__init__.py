"""The Colonies layer: the one place that speaks the Colonies protocol.

``transport`` (signed RPCs, failover over ``nodes``) on ``connection`` (one keep-alive HTTP
connection per thread) and ``signing`` (keys, IDs, the signed envelope); ``client`` (one method
per RPC we send), ``reply`` (reading every reply), ``spec`` (a call's process spec and result
encodings), ``calls`` and ``backend`` (submitting a call and learning how it ended),
``faults`` (what a failed request means to the caller: one failure kind for each error),
``lifecycle`` and ``inventory`` (ColonyFS ``/faas`` and colony queries). It loads no Colonies
client library, and never the engine or the HTTP front end.
"""
