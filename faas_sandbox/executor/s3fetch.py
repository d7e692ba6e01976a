"""Function code from the operator's S3 store, bounded by the call's deadline and a byte cap.

One :class:`S3Reader` per executor, for the ONE store its settings name (``AWS_S3_ENDPOINT``,
``AWS_S3_BUCKET``): ColonyFS metadata never chooses where a request goes (codestore.py checks
that first). boto3 only signs: :meth:`S3Reader.fetch` presigns a GET locally and performs it
with ``http.client``, so every step is under our control:

- connect: at most ``connect_s`` and never past the deadline;
- each read: at most ``read_s`` and never past the deadline (the socket timeout is set before
  every read), and the whole body by the deadline (checked between reads);
- a watchdog timer shuts the socket down at the deadline, which also ends a status line or
  headers dripped one byte at a time;
- a ``Content-Length`` over the cap is refused before the body is read, and the body is never
  read past ``max_bytes + 1``.

Failures are our vocabulary: :class:`CodeUnavailable` (store down, slow past the deadline,
refusing) or :class:`FunctionNotFound` (the object is gone, or over the size cap). No error
message carries bytes of the body.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..errors import CodeUnavailable, FunctionNotFound
from ..settings import S3Settings

CONNECT_S = 2.0
READ_S = 10.0
_CHUNK = 64 * 1024
_ERROR_BODY = 4096
_S3_CODE = re.compile(rb"<Code>([A-Za-z]{1,64})</Code>")


class S3Reader:
    """Bounded GETs from the configured store; ``client`` (boto3) also serves uploads."""

    def __init__(
        self,
        settings: S3Settings,
        *,
        connect_s: float = CONNECT_S,
        read_s: float = READ_S,
        pool_size: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.connect_s, self.read_s = connect_s, read_s
        self._clock = clock
        self._pool_size = pool_size
        self._client: Any = None
        self._lock = threading.Lock()
        # Loaded now, when the executor starts, not by the first call's fetch: importing boto3
        # takes 0.2 s or more on a busy host, which would come out of that call's deadline.
        import boto3  # noqa: F401

    @property
    def client(self) -> Any:
        """The one boto3 client, for the configured endpoint (made on first use)."""
        if self._client is None:
            with self._lock:  # creating boto3 clients is not thread-safe; using them is
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    s = self.settings
                    self._client = boto3.session.Session().client(
                        "s3",
                        endpoint_url=f"http{'s' if s.tls else ''}://{s.endpoint}",
                        aws_access_key_id=s.access_key or None,
                        aws_secret_access_key=s.secret_key or None,
                        region_name=s.region or None,
                        use_ssl=s.tls,
                        verify=not s.skip_verify,
                        config=Config(
                            connect_timeout=self.connect_s,
                            read_timeout=self.read_s,
                            retries={"max_attempts": 2, "mode": "standard"},
                            max_pool_connections=self._pool_size,
                        ),
                    )
        return self._client

    def fetch(self, key: str, *, deadline: float, max_bytes: int) -> bytes:
        """The object's bytes (at most ``max_bytes``), or CodeUnavailable/FunctionNotFound."""
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.settings.bucket, "Key": key}, ExpiresIn=300
        )
        return bounded_get(
            url,
            deadline=deadline,
            max_bytes=max_bytes,
            connect_s=self.connect_s,
            read_s=self.read_s,
            verify=not self.settings.skip_verify,
            clock=self._clock,
        )


def bounded_get(
    url: str,
    *,
    deadline: float,
    max_bytes: int,
    connect_s: float = CONNECT_S,
    read_s: float = READ_S,
    verify: bool = True,
    clock: Callable[[], float] = time.monotonic,
) -> bytes:
    """GET ``url`` within ``deadline`` (a ``clock`` time) and ``max_bytes`` (module docstring)."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port}"
    left = deadline - clock()
    if left <= 0:
        raise CodeUnavailable(f"S3 {where}: no time left before the call's deadline")
    if parts.scheme == "https":
        context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, timeout=min(connect_s, left), context=context
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname or "", parts.port, timeout=min(connect_s, left)
        )
    watchdog = threading.Timer(left, _shutdown, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        return _get(conn, parts, deadline, max_bytes, read_s, clock, where)
    except (OSError, http.client.HTTPException) as exc:
        if clock() >= deadline:
            raise CodeUnavailable(f"S3 {where}: not done by the call's deadline") from None
        raise CodeUnavailable(f"S3 {where}: {_gist(exc)}") from None
    finally:
        watchdog.cancel()
        conn.close()


def _get(
    conn: http.client.HTTPConnection,
    parts: Any,
    deadline: float,
    max_bytes: int,
    read_s: float,
    clock: Callable[[], float],
    where: str,
) -> bytes:
    conn.connect()
    _arm(conn, deadline, read_s, clock, where)
    conn.request("GET", f"{parts.path}?{parts.query}")
    response = conn.getresponse()
    if response.status != 200:
        code = _S3_CODE.search(response.read(_ERROR_BODY) if response.status < 500 else b"")
        name = code.group(1).decode() if code else f"HTTP {response.status}"
        if response.status == 404 or name == "NoSuchKey":
            raise FunctionNotFound("its content is gone from S3")
        raise CodeUnavailable(f"S3 {where} refused the read: {name}")
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise FunctionNotFound(f"it is {int(length)} bytes, over the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        _arm(conn, deadline, read_s, clock, where)
        chunk = response.read1(_CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise FunctionNotFound(f"it is over the {max_bytes}-byte limit")
        chunks.append(chunk)
    if response.length:  # the connection ended before Content-Length bytes came
        if clock() >= deadline:
            raise CodeUnavailable(f"S3 {where}: not done by the call's deadline")
        raise CodeUnavailable(f"S3 {where}: connection closed mid-body")
    return b"".join(chunks)


def _arm(
    conn: http.client.HTTPConnection,
    deadline: float,
    read_s: float,
    clock: Callable[[], float],
    where: str,
) -> None:
    """Give the next socket operation what is left of the deadline (at most ``read_s``)."""
    left = deadline - clock()
    if left <= 0:
        raise CodeUnavailable(f"S3 {where}: not done by the call's deadline")
    if conn.sock is not None:
        conn.sock.settimeout(min(read_s, left))


def _shutdown(conn: http.client.HTTPConnection) -> None:
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _gist(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "..."
