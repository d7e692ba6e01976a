"""Selftest probes that reach outside the child: files and directories, sockets and the
network. Each returns ``{"denied", "detail"}`` (see :mod:`.attempts`)."""

from __future__ import annotations

import ctypes
import os
import socket
from functools import partial
from typing import Any

from .attempts import Attempts, check, read_file, syscall


def read_etc_passwd(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("open", lambda: read_file("/etc/passwd"))
    t.raw("raw openat", "openat", ctypes.c_int(-100), b"/etc/passwd", 0, 0)
    how = (ctypes.c_uint64 * 3)(0, 0, 0)  # struct open_how: O_RDONLY
    t.raw("raw openat2", "openat2", ctypes.c_int(-100), b"/etc/passwd", how, 24)
    return t.report()


def read_package_source(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("open own module", lambda: read_file(__file__))
    t("open package", lambda: read_file(ctx["args"]["package_file"]))
    return t.report()


def read_parent_environ(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    ppid = ctx["args"]["forker_pid"]
    t("open /proc/PPID/environ", lambda: read_file(f"/proc/{ppid}/environ"))
    t("open /proc/PPID/mem", lambda: read_file(f"/proc/{ppid}/mem"))
    t("open /proc/self/environ", lambda: read_file("/proc/self/environ"))
    return t.report()


def list_root(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("listdir /", lambda: os.listdir("/"))
    t("listdir .", lambda: os.listdir("."))
    t("listdir /tmp", lambda: os.listdir("/tmp"))
    t(
        "raw open / O_DIRECTORY",
        lambda: check(syscall("openat", ctypes.c_int(-100), b"/", 0o200000, 0)),
    )
    return t.report()


def _create_file(path: str) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))


def _create(t: Attempts, paths: list[str]) -> None:
    for path in paths:
        t(f"create {path}", partial(_create_file, path))
        t(f"mkdir {path}.d", partial(os.mkdir, path + ".d"))
        t(f"mkfifo {path}.p", partial(os.mkfifo, path + ".p"))
        t(f"symlink {path}.l", partial(os.symlink, "/etc/passwd", path + ".l"))


def create_file_tmp(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    _create(t, ctx["args"]["tmp_paths"])
    return t.report()


def create_file_cwd(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    _create(t, [ctx["args"]["cwd_name"]])
    return t.report()


def _open_close(family: int, kind: int) -> None:
    socket.socket(family, kind).close()


def _socketpair() -> None:
    for s in socket.socketpair():
        s.close()


def socket_inet(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    for family, kind in (
        (socket.AF_INET, socket.SOCK_STREAM),
        (socket.AF_INET, socket.SOCK_DGRAM),
        (socket.AF_INET6, socket.SOCK_STREAM),
        (socket.AF_NETLINK, socket.SOCK_RAW),
    ):
        t(f"socket({family.name}, {kind.name})", partial(_open_close, family, kind))
    t.raw("raw socket(AF_INET)", "socket", 2, 1, 0)
    return t.report()


def socket_unix(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    t("socket(AF_UNIX)", lambda: socket.socket(socket.AF_UNIX).close())
    t("socketpair", _socketpair)
    name = "\0" + ctx["args"]["abstract_name"]

    def connect_abstract() -> None:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(name)
        finally:
            s.close()

    t("connect abstract", connect_abstract)
    return t.report()


def connect_loopback(ctx: dict[str, Any]) -> dict[str, Any]:
    t = Attempts()
    port = ctx["args"]["port"]
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):

        def connect(f: int = family, h: str = host) -> None:
            s = socket.socket(f, socket.SOCK_STREAM)
            try:
                s.settimeout(1)
                s.connect((h, port))
            finally:
                s.close()

        t(f"connect {host} port {port}", connect)
    return t.report()
