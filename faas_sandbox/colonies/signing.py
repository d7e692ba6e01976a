"""Colonies identities and the signed request envelope (protocol §1, §2).

A request is ``{"payloadtype", "payload", "signature"}``: ``payload`` is the standard base64 of
the message JSON, and ``signature`` a recoverable secp256k1 signature over the SHA3-256 digest
of that base64 *text*, written as 130 hex characters ``r || s || v``. libsecp256k1 (through
coincurve) uses RFC 6979 nonces and low-s signatures, so it writes exactly the bytes pycolonies'
pure-Python signer writes, in about a tenth of a millisecond instead of a few milliseconds
(tests/unit/test_signing.py compares them; the integration tests check the server accepts them).

The message JSON is ``json.dumps`` with its default separators, the text pycolonies signs for the
same message. Output elements the sandbox made (:class:`~faas_sandbox.element.Element`)
are spliced in as they are: a result is never decoded and encoded again here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Mapping
from typing import Any

from coincurve import PrivateKey

from ..element import Element

_keys: dict[str, PrivateKey] = {}
_keys_lock = threading.Lock()


def _private_key(prvkey: str) -> PrivateKey:
    key = _keys.get(prvkey)
    if key is None:
        key = PrivateKey(bytes.fromhex(prvkey))
        with _keys_lock:
            _keys[prvkey] = key
    return key


def sign(payload: str, prvkey: str) -> str:
    """130 hex characters r||s||v over SHA3-256 of the payload text."""
    digest = hashlib.sha3_256(payload.encode()).digest()
    return str(_private_key(prvkey).sign_recoverable(digest, hasher=None).hex())


def key_id(prvkey: str) -> str:
    """The Colonies ID of a private key: SHA3-256 of the uncompressed public key's hex."""
    public = _private_key(prvkey).public_key.format(compressed=False)
    return hashlib.sha3_256(public.hex().encode()).hexdigest()


def new_prvkey() -> str:
    """A fresh random private key, 64 hex characters."""
    return str(PrivateKey().secret.hex())


def message_bytes(msg: Mapping[str, Any]) -> bytes:
    """A request message's JSON; :class:`Element` items of ``out`` go in as their bytes."""
    out = msg.get("out")
    if not isinstance(out, list) or not any(isinstance(item, Element) for item in out):
        return json.dumps(msg, allow_nan=False).encode()
    head = json.dumps({k: v for k, v in msg.items() if k != "out"}, allow_nan=False).encode()
    items = b", ".join(
        item if isinstance(item, Element) else json.dumps(item, allow_nan=False).encode()
        for item in out
    )
    return head[:-1] + (b', "out": [' if len(head) > 2 else b'"out": [') + items + b"]}"


def envelope(msg: Mapping[str, Any], prvkey: str) -> dict[str, str]:
    """The signed envelope of one message (``msg["msgtype"]`` names its type)."""
    payload = base64.b64encode(message_bytes(msg)).decode()
    return {"payloadtype": msg["msgtype"], "payload": payload, "signature": sign(payload, prvkey)}


def request_body(msg: Mapping[str, Any], prvkey: str) -> bytes:
    """The body of ``POST /api`` (or a ``/pubsub`` frame) for one message."""
    return json.dumps(envelope(msg, prvkey)).encode()
