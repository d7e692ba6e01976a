"""Keys leave /proc/<pid>/environ through a clean re-exec of the same pid."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import json, os, sys
from faas_sandbox.executor.secrets import reexec_without_keys, take_keys
print(os.getpid(), file=sys.stderr, flush=True)
reexec_without_keys()
keys = take_keys()
with open(f"/proc/{os.getpid()}/environ", "rb") as f:
    environ = f.read()
print(json.dumps({"keys": keys, "leak": b"0123456789abcdef" in environ, "pid": os.getpid(),
                  "fd_var": "FAAS_SANDBOX_KEYS_FD" in os.environ, "other": os.environ.get("KEEP"),
                  "fds": sorted(os.listdir("/proc/self/fd"))}))
"""


def test_keys_are_handed_over_and_gone_from_the_environ_file():
    key = "0123456789abcdef" * 4
    # start from an environment without keys: other tests (the stack fixture) may have set some
    clean = {k: v for k, v in os.environ.items() if "PRVKEY" not in k and "SECRET" not in k}
    env = {
        **clean,
        "COLONIES_PRVKEY": key,
        "AWS_S3_SECRETKEY": "0123456789abcdef-s3",
        "KEEP": "yes",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout)
    assert result["keys"] == {"COLONIES_PRVKEY": key, "AWS_S3_SECRETKEY": "0123456789abcdef-s3"}
    assert result["leak"] is False and result["fd_var"] is False
    assert result["other"] == "yes"
    assert str(result["pid"]) == done.stderr.split()[-1]  # same pid, re-executed
    assert len(result["fds"]) <= 4  # 0-2 and the listing itself: the pipe was closed


def test_without_keys_nothing_happens():
    env = {k: v for k, v in os.environ.items() if "PRVKEY" not in k and "SECRET" not in k}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["keys"] == {}
    assert done.stderr.split()[-1] == str(json.loads(done.stdout)["pid"])


def test_the_malloc_mmap_threshold_can_be_fixed():
    from faas_sandbox.executor.secrets import fixed_mmap_threshold

    assert fixed_mmap_threshold() is True  # glibc (Debian, CI); mallopt accepted it
