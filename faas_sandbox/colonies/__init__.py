"""The Colonies layer: the one place that speaks the Colonies protocol.

``client`` (transport, signing, failover over ``nodes``), ``reply`` (reading every reply),
``spec`` (a call's process spec and result encodings), ``calls`` and ``backend`` (submitting a
call and learning how it ended), ``lifecycle`` and ``inventory`` (ColonyFS ``/faas`` and colony
queries). It never loads the engine or the HTTP front end.
"""
