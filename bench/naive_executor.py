"""The ColonyOS FaaS tutorial's executor, as written, for bench/bench_e2e.py to compare against.

This is the tutorial's ``faas_executor.py`` (tutorials/04-faas, "Full example") with only what a
benchmark needs changed, so the comparison is at equal concurrency:

- ``--threads N`` threads each run the tutorial's ``start()`` loop on ONE registered executor
  (one pycolonies client, one key), like our ``--concurrency N``. The tutorial's own way to scale
  is "start another FaaS Executor"; threads give the same number of calls in flight;
- the executor type and name come from the command line (unique per benchmark run, so no other
  executor takes its calls), and one ready line is printed once it is registered.

Everything else is the tutorial's: pycolonies as-is (``colonies_client()``, pure-Python signing,
a new HTTP connection per request), ``add_log`` on every call, the code downloaded from ColonyFS
on every call with ``download_data`` (a ``get_file`` RPC, a new boto3 client and an S3 GET), a
bare ``exec`` in the executor's own globals, and ``close(pid, [r])``. Errors are printed and the
loop goes on (a call that raised after assign stays RUNNING until its maxexectime).

    .venv/bin/python bench/naive_executor.py --threads 4 --executortype bench-naive-1234
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid

from pycolonies import Crypto, colonies_client

READY = "BENCH-EXECUTOR-READY"  # same text as bench/_common.py READY (not imported: as-is)


class FaaSExecutor:
    def __init__(self, executortype: str) -> None:
        colonies, colonyname, colony_prvkey, _, _ = colonies_client()
        self.colonies = colonies
        self.colonyname = colonyname
        self.colony_prvkey = colony_prvkey
        self.executorname = "faas-executor" + uuid.uuid4().hex[:6]
        self.executortype = executortype

        crypto = Crypto()
        self.executor_prvkey = crypto.prvkey()
        self.executorid = crypto.id(self.executor_prvkey)

        self.register()

    def register(self) -> None:
        executor = {
            "executorname": self.executorname,
            "executorid": self.executorid,
            "colonyname": self.colonyname,
            "executortype": self.executortype
        }

        try:
            executor = self.colonies.add_executor(executor, self.colony_prvkey)
            self.colonies.approve_executor(self.colonyname, self.executorname, self.colony_prvkey)

            self.colonies.add_function(self.colonyname,
                                       self.executorname,
                                       "execute",
                                       self.executor_prvkey)
        except Exception as err:
            print(err)
            os._exit(0)

        print("Executor", self.executorname, "registered")

    def start(self) -> None:
        while (True):
            try:
                process = self.colonies.assign(self.colonyname, 10, self.executor_prvkey)
                print("Process", process.processid, "is assigned to executor")
                self.colonies.add_log(process.processid, "Executing function \n", self.executor_prvkey)

                if process.spec.funcname == "execute":
                    # parse function spec
                    function = process.spec.kwargs["function"]
                    arg = process.spec.kwargs["arg"]

                    # fetch source code
                    source_code = self.colonies.download_data(self.colonyname, self.executor_prvkey, label="/faas", filename=function)
                    source_code_str = source_code.decode('utf-8')

                    # call the function
                    namespace = {}
                    exec(source_code_str, globals(), namespace)
                    f = namespace[function]
                    r = f(float(arg))

                    self.colonies.close(process.processid, [r], self.executor_prvkey)

            except Exception as err:
                print(err)
                pass

    def unregister(self) -> None:
        self.colonies.remove_executor(self.colonyname, self.executorname, self.colony_prvkey)
        print("Executor", self.executorname, "unregistered")
        sys.stdout.flush()
        os._exit(0)


def sigint_handler(signum, frame) -> None:  # type: ignore[no-untyped-def]
    executor.unregister()


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--executortype", default="faas-executor")
    opts = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGINT, sigint_handler)
    signal.signal(signal.SIGTERM, sigint_handler)
    executor = FaaSExecutor(opts.executortype)
    print(READY, executor.executorname, flush=True)
    for _ in range(opts.threads):
        threading.Thread(target=executor.start, daemon=True).start()
    while True:  # the main thread only waits for the signal (handlers run here)
        time.sleep(1)
