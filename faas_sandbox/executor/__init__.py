"""The executor layer: pull calls from Colonies and run each one in the engine.

``loop`` (the pull loop: its worker threads, their supervision, stop and grace), ``calling``
(the way of one call: parse, fetch, run in the sandbox, report), ``ahead`` (sandbox slots and
calls taken ahead of a free one), ``ledger`` (the process ids the executor holds),
``adoption`` (assignments whose reply was lost), ``intake`` (what a pulled process is),
``codestore``/``s3fetch`` (a function's source, cached), ``codemeta`` (which ColonyFS metadata
is trusted), ``publish`` (deploying and removing functions: the CLI's), ``reports``/``delivery``
(closing or failing a process, with retries), ``registration`` and ``secrets`` (the executor's
identity and keys), ``liveness`` (its health endpoint), ``texts`` (hostile text made safe for
the server and the log). It uses the engine and the Colonies layer, never the HTTP front end.
"""
