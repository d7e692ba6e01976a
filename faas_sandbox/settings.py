"""Settings from the environment: the one place that reads ``os.environ``-like mappings.

Variable names are pycolonies' own (``colonies_client()``), unchanged, so a shell set up for the
tutorial or the ``colonies`` CLI works as is::

    COLONIES_SERVER_HOST, COLONIES_SERVER_PORT, COLONIES_SERVER_TLS ("true" or not),
        (the host may list a cluster's nodes: "a:50281,b:50282,c"; see faas_sandbox.colonies.nodes)
    COLONIES_COLONY_NAME,
    COLONIES_COLONY_PRVKEY                       colony owner key (self-registering executor)
    COLONIES_PRVKEY + COLONIES_EXECUTOR_NAME     an identity an operator registered
    AWS_S3_ENDPOINT (host:port), AWS_S3_ACCESSKEY, AWS_S3_SECRETKEY, AWS_S3_REGION,
    AWS_S3_TLS, AWS_S3_SKIPVERIFY, AWS_S3_BUCKET  ColonyFS content (MinIO/S3): the ONLY store
                                                 an executor reads function code from

Keys are kept out of ``repr`` so a logged Settings never shows one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .colonies.nodes import parse_nodes
from .errors import SettingsError

_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
KEY_VARIABLES = (
    "COLONIES_COLONY_PRVKEY",
    "COLONIES_PRVKEY",
    "COLONIES_SERVER_PRVKEY",
    "AWS_S3_SECRETKEY",
)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where ColonyFS content lives; credentials come only from here, never from file metadata."""

    endpoint: str = ""  # host:port, no scheme (pycolonies' format); used for uploads
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    region: str = ""
    tls: bool = False
    skip_verify: bool = False
    bucket: str = ""

    def require_upload(self) -> None:
        """Raise SettingsError unless everything an upload needs is set."""
        missing = [
            name
            for name, value in (
                ("AWS_S3_ENDPOINT", self.endpoint),
                ("AWS_S3_ACCESSKEY", self.access_key),
                ("AWS_S3_SECRETKEY", self.secret_key),
                ("AWS_S3_BUCKET", self.bucket),
            )
            if not value
        ]
        if missing:
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
        if self.endpoint.count(":") != 1 or "/" in self.endpoint:
            raise SettingsError(
                f"AWS_S3_ENDPOINT must be host:port without a scheme, got {self.endpoint!r}"
            )


@dataclass(frozen=True, slots=True)
class Settings:
    """Connection and identity settings; build with :meth:`from_env`."""

    host: str
    port: int
    tls: bool
    colony_name: str
    colony_prvkey: str | None = field(default=None, repr=False)
    prvkey: str | None = field(default=None, repr=False)
    executor_name: str | None = None
    s3: S3Settings = field(default_factory=S3Settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read and validate; raise SettingsError naming the variable at fault."""

        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        host = get("COLONIES_SERVER_HOST")
        port_text = get("COLONIES_SERVER_PORT")
        colony = get("COLONIES_COLONY_NAME")
        missing = [
            name
            for name, value in (
                ("COLONIES_SERVER_HOST", host),
                ("COLONIES_SERVER_PORT", port_text),
                ("COLONIES_COLONY_NAME", colony),
            )
            if value is None
        ]
        if missing:
            raise SettingsError(f"missing environment variable(s): {', '.join(missing)}")
        assert host is not None and port_text is not None and colony is not None
        try:
            port = int(port_text)
        except ValueError:
            raise SettingsError(
                f"COLONIES_SERVER_PORT: expected a port number, got {port_text!r}"
            ) from None
        if not 0 < port < 65536:
            raise SettingsError(f"COLONIES_SERVER_PORT: out of range: {port}")
        try:
            parse_nodes(host, port)  # one node or a cluster's nodes: "a:50281,b:50282"
        except ValueError as exc:
            raise SettingsError(f"COLONIES_SERVER_HOST: {exc}") from None
        colony_prvkey = _key(get("COLONIES_COLONY_PRVKEY"), "COLONIES_COLONY_PRVKEY")
        prvkey = _key(get("COLONIES_PRVKEY"), "COLONIES_PRVKEY")
        s3 = S3Settings(
            endpoint=get("AWS_S3_ENDPOINT") or "",
            access_key=get("AWS_S3_ACCESSKEY") or "",
            secret_key=get("AWS_S3_SECRETKEY") or "",
            region=get("AWS_S3_REGION") or "",
            tls=_true(get("AWS_S3_TLS")),
            skip_verify=_true(get("AWS_S3_SKIPVERIFY")),
            bucket=get("AWS_S3_BUCKET") or "",
        )
        return cls(
            host=host,
            port=port,
            tls=_true(get("COLONIES_SERVER_TLS")),
            colony_name=colony,
            colony_prvkey=colony_prvkey,
            prvkey=prvkey,
            executor_name=get("COLONIES_EXECUTOR_NAME"),
            s3=s3,
        )

    def require_prvkey(self) -> str:
        """The member key (COLONIES_PRVKEY) that submits, deploys and reads; or SettingsError."""
        if self.prvkey is None:
            raise SettingsError("missing environment variable: COLONIES_PRVKEY")
        return self.prvkey


def _key(value: str | None, name: str) -> str | None:
    if value is not None and not _HEX64.fullmatch(value):
        raise SettingsError(f"{name}: expected 64 hex characters")
    return value.lower() if value else None
