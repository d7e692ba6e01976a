"""Our signed envelopes are the bytes pycolonies' own client writes for the same message.

pycolonies' client builds a request as ``payload = base64(json.dumps(msg))`` and signs it with
``Crypto(native=False).sign(payload, prvkey)`` (its pure-Python signer), then sends
``json.dumps({"payloadtype", "payload", "signature"})``. :func:`pycolonies_body` does exactly
that with pycolonies' public ``Crypto`` class; ours must match it byte for byte.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from faas_sandbox.colonies.signing import (
    envelope,
    key_id,
    message_bytes,
    new_prvkey,
    request_body,
    sign,
)
from faas_sandbox.element import Element

KNOWN_KEY = "ddf7f7791208083b6a9ed975a72684f6406a269cfa36f1b1c32045c0a71fff05"
KNOWN_ID = "3fc05cf3df4b494e95d6a3d297a34f19938f7daa7422ab0d4f794454133341ac"
# A fixed message, as the executor sends it (every JSON kind, non-ASCII text included).
FIXED = {
    "msgtype": "closesuccessfulmsg",
    "processid": "a" * 64,
    "out": [69.8, "text", "Grüße ✓", 7, '{"json": "as a string"}'],
}


def pycolonies_body(msg: dict[str, Any], prvkey: str) -> bytes:
    """The request body pycolonies' client sends for ``msg``, built with its public crypto."""
    from crypto import Crypto  # pycolonies' top-level signer module

    payload = str(base64.b64encode(json.dumps(msg).encode("utf-8")), "utf-8")
    signature = Crypto(native=False).sign(payload, prvkey)
    return json.dumps(
        {"payloadtype": msg["msgtype"], "payload": payload, "signature": signature}
    ).encode()


def test_a_fixed_message_and_key_give_pycolonies_bytes_exactly() -> None:
    ours = request_body(FIXED, KNOWN_KEY)
    assert ours == pycolonies_body(FIXED, KNOWN_KEY)
    assert len(envelope(FIXED, KNOWN_KEY)["signature"]) == 130


@pytest.mark.parametrize(
    "msg",
    [
        {"msgtype": "versionmsg"},
        {"msgtype": "assignprocessmsg", "colonyname": "dev", "timeout": 10},
        {
            "msgtype": "submitfuncspecmsg",
            "spec": {
                "funcname": "execute",
                "kwargs": {"a": "x" * 999},
                "conditions": {"executornames": None},
            },
        },
        {
            "msgtype": "getfilemsg",
            "colonyname": "dev",
            "fileid": "",
            "label": "/faas",
            "name": "f",
            "latest": True,
        },
    ],
)
def test_every_kind_of_message_matches_with_fresh_keys_too(msg: dict[str, Any]) -> None:
    for key in (KNOWN_KEY, new_prvkey()):
        assert request_body(msg, key) == pycolonies_body(msg, key)


def test_spliced_output_elements_sign_what_pycolonies_signs_for_the_values() -> None:
    """Elements go into the message as their bytes; the text is the one json.dumps writes."""
    elements = [Element(b"69.8"), Element(b'"text"'), Element(b'"Gr\\u00fc\\u00dfe"')]
    spliced = {"msgtype": "closesuccessfulmsg", "processid": "p", "out": elements}
    decoded = {"msgtype": "closesuccessfulmsg", "processid": "p", "out": [69.8, "text", "Grüße"]}
    assert message_bytes(spliced) == json.dumps(decoded).encode()
    assert request_body(spliced, KNOWN_KEY) == pycolonies_body(decoded, KNOWN_KEY)


def test_ids_and_raw_signatures_match_pycolonies_crypto() -> None:
    from crypto import Crypto

    crypto = Crypto(native=False)
    assert key_id(KNOWN_KEY) == KNOWN_ID == crypto.id(KNOWN_KEY)
    key = crypto.prvkey()
    assert key_id(key) == crypto.id(key)
    for payload in ("eyJtc2d0eXBlIjoidmVyc2lvbm1zZyJ9", "x" * 999, ""):
        assert sign(payload, key) == crypto.sign(payload, key)
