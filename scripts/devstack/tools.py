"""Make sure the programs exist: PostgreSQL (apt), the Colonies server, MinIO and Toxiproxy
(built with Go; Toxiproxy only for bench/continuum.py).

Builds print a progress line every 30 s and log to ``$FAAS_SANDBOX_HOME/logs/*-build.log``.
A built binary gets a ``<name>.version`` stamp next to it and is reused while the stamp shows
the pinned version (MinIO: or while ``go version -m`` does).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from . import config
from .procs import StackError, run_logged, say

GO_FALLBACK_DIRS = ("/usr/local/go/bin", str(Path.home() / "go" / "bin"))


def go_binary() -> str:
    found = shutil.which("go") or shutil.which("go", path=os.pathsep.join(GO_FALLBACK_DIRS))
    if not found:
        raise StackError("the Go toolchain is needed to build Colonies and MinIO; put `go` on PATH")
    return found


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"  # static binaries; no C compiler needed on CI
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _build_info(binary: Path) -> str:
    try:
        return subprocess.run(
            [go_binary(), "version", "-m", str(binary)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
    except (StackError, OSError, subprocess.SubprocessError):
        return ""


def _runs(binary: Path) -> bool:
    try:
        return (
            subprocess.run(
                [str(binary), "--help"], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


def _stamp(binary: Path) -> Path:
    return binary.with_name(binary.name + ".version")


def _stamped(binary: Path, version: str) -> bool:
    stamp = _stamp(binary)
    return stamp.exists() and stamp.read_text().strip() == version


def ensure_postgres() -> None:
    """PostgreSQL server binaries; apt-get install them when missing (root only)."""
    if (config.PG_BIN / "postgres").exists() and (config.PG_BIN / "initdb").exists():
        return
    if not config.IS_ROOT or not shutil.which("apt-get"):
        raise StackError(
            f"PostgreSQL {config.PG_MAJOR} server binaries not found in {config.PG_BIN}; "
            f"install them (Debian: apt-get install postgresql) or set FAAS_SANDBOX_PG_BIN"
        )
    say("installing PostgreSQL with apt-get (first run only)")
    log = config.LOG_DIR / "apt.log"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run_logged(["apt-get", "update", "-q"], log, env=env, what="apt-get update")
    run_logged(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
        log,
        env=env,
        what="apt-get install postgresql",
    )
    if not (config.PG_BIN / "postgres").exists():
        raise StackError(f"apt installed postgresql but {config.PG_BIN}/postgres is missing")


def ensure_colonies() -> Path:
    binary = config.BIN_DIR / "colonies"
    version = config.COLONIES_VERSION
    if binary.exists() and _runs(binary):
        if _stamped(binary, version):
            return binary
        # Go build info cannot tell (-trimpath omits -ldflags, so BuildVersion is not there).
        info = _build_info(binary)
        if f"path\t{config.COLONIES_MODULE}/cmd" in info and not _stamp(binary).exists():
            # Built by hand before this script existed (no version in the build info).
            say(f"adopting existing {binary} as Colonies {version} (no version stamp found)")
            _stamp(binary).write_text(version + "\n")
            return binary
    _build_colonies(binary, version)
    return binary


def _build_colonies(binary: Path, version: str) -> None:
    # `go install .../cmd@v1.9.12` fails behind the proxy here (403 on the deprecation lookup
    # via @v/list), so download the exact module and build it from a writable copy.
    say(f"building Colonies server {version}: takes about 2 minutes (first run only)")
    ldflags = f"-s -w -X main.BuildVersion={version} -X main.BuildTime=" + time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()
    )
    _build_module(config.COLONIES_MODULE, version, "./cmd", binary, ldflags, "colonies")


def ensure_toxiproxy() -> Path:
    """The Toxiproxy server (latency, cuts and resets between network hosts in the continuum)."""
    binary = config.BIN_DIR / "toxiproxy-server"
    version = config.TOXIPROXY_VERSION
    if binary.exists() and _runs(binary) and _stamped(binary, version):
        return binary
    say(f"building Toxiproxy {version}: takes about a minute (first run only)")
    _build_module(
        config.TOXIPROXY_MODULE,
        version,
        "./cmd/server",
        binary,
        f"-s -w -X github.com/Shopify/toxiproxy/v2.Version={version}",
        "toxiproxy",
    )
    return binary


def _build_module(
    module: str, version: str, package: str, binary: Path, ldflags: str, name: str
) -> None:
    """Download exactly module@version from the Go proxy and build one package of it."""
    log = config.LOG_DIR / f"{name}-build.log"
    go, env = go_binary(), _go_env()
    started = time.monotonic()
    out = subprocess.run(
        [go, "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        raise StackError(
            f"go mod download {module}@{version} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
        )
    src = Path(json.loads(out.stdout)["Dir"])
    work = config.BUILD_DIR / f"{name}-{version}"
    shutil.rmtree(work, ignore_errors=True)
    work.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, work)
    for path in [work, *work.rglob("*")]:  # the module cache is read-only
        path.chmod(path.stat().st_mode | 0o200)
    tmp = binary.with_name(binary.name + ".new")
    run_logged(
        [
            "nice",
            "-n",
            "10",
            go,
            "build",
            "-trimpath",
            "-ldflags",
            ldflags,
            "-o",
            str(tmp),
            package,
        ],
        log,
        env=env,
        cwd=work,
        what=f"go build {name}",
    )
    os.replace(tmp, binary)
    _stamp(binary).write_text(version + "\n")
    shutil.rmtree(work, ignore_errors=True)
    say(f"built {binary} in {time.monotonic() - started:.0f}s")


def ensure_minio() -> Path:
    binary = config.BIN_DIR / "minio"
    version = config.MINIO_VERSION
    if binary.exists() and _runs(binary):
        if _stamped(binary, version):
            return binary
        if f"mod\t{config.MINIO_MODULE}\t{version}" in _build_info(binary):
            _stamp(binary).write_text(version + "\n")
            return binary
        say(f"{binary} is not MinIO {version}; rebuilding")
    say(f"building MinIO {version}: takes about 3 minutes (first run only)")
    started = time.monotonic()
    env = _go_env()
    env["GOBIN"] = str(config.BIN_DIR)
    run_logged(
        [
            "nice",
            "-n",
            "10",
            go_binary(),
            "install",
            "-trimpath",
            f"{config.MINIO_MODULE}@{version}",
        ],
        config.LOG_DIR / "minio-build.log",
        env=env,
        cwd=config.BIN_DIR,
        what="go install minio",
    )
    _stamp(binary).write_text(version + "\n")
    say(f"built {binary} in {time.monotonic() - started:.0f}s")
    return binary
