"""The size rules (sizes.py): one measure and one message per limit, the same wherever a call's
bytes enter (the HTTP front end, deploy, the engine's entry)."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from faas_sandbox.cli.sourcecheck import problems
from faas_sandbox.engine.verdict import admit
from faas_sandbox.kinds import ErrorKind
from faas_sandbox.policy import Limits, Policy
from faas_sandbox.sizes import args_json, args_over, source_over


def test_arguments_are_measured_as_compact_utf8_json_of_args_and_kwargs():
    assert args_json([1, "é"], {"k": None}) == '[[1,"é"],{"k":null}]'.encode()
    assert args_json((), None) == b"[[],{}]"
    # a lone surrogate cannot be UTF-8: the escaped form is the same JSON value
    assert json.loads(args_json(["\ud800"], {})) == [["\ud800"], {}]
    with pytest.raises(ValueError, match="not JSON compliant"):
        args_json([float("nan")], {})


def test_each_rule_allows_exactly_its_limit_and_says_why_past_it():
    assert source_over(100, 100) is None
    assert source_over(101, 100) == "source is 101 bytes, over the limit of 100 (max_source_bytes)"
    assert args_over(100, 100) is None
    assert args_over(101, 100) == (
        "arguments are 101 bytes of JSON, over the limit of 100 (max_args_bytes)"
    )


def test_the_engine_entry_and_deploy_refuse_a_source_with_the_same_words():
    limits = Limits(max_source_bytes=10)
    source = b"def f():\n    return 1\n"
    refused = admit(len(source), 7, limits.max_source_bytes, limits.max_args_bytes)
    assert refused is not None and refused.error_kind is ErrorKind.COMPILE
    assert problems(source, Policy(limits=limits), "f") == [refused.message]


def test_the_front_end_and_the_engine_entry_refuse_arguments_with_the_same_measure():
    from fastapi.testclient import TestClient

    from faas_sandbox.frontend.app import ApiSettings, create_app
    from faas_sandbox.metrics import Metrics
    from tests.unit.test_http_api import FakeBackend

    limits = Limits(max_args_bytes=20)
    args = ["é" * 10]  # 19 characters of JSON (under the limit), 29 bytes of UTF-8
    size = len(args_json(args, {}))
    assert size == 29
    engine = admit(1, size, limits.max_source_bytes, limits.max_args_bytes)
    assert engine is not None and engine.message == f"ValueError: {args_over(29, 20)}"
    app = create_app(
        FakeBackend({}),
        ApiSettings(policy=Policy(limits=limits)),
        metrics=Metrics(CollectorRegistry()),
    )
    response = TestClient(app).post("/functions/f/call", json={"args": args})
    assert response.status_code == 413
    assert response.json()["detail"]["message"] == f"f: {args_over(29, 20)}"


def test_the_ceiling_is_the_largest_limit_any_function_has():
    policy = Policy.from_dict(
        {
            "limits": {"max_source_bytes": 100},
            "functions": {"big": {"max_source_bytes": 500}, "small": {"max_source_bytes": 10}},
        }
    )
    assert policy.ceiling("max_source_bytes") == 500
    assert Policy().ceiling("max_args_bytes") == Limits().max_args_bytes
