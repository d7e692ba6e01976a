"""Spec parsing and the value encodings (docs/protocol.md), no server."""

from __future__ import annotations

import base64
import inspect
import json
import math

import pytest

from faas_sandbox.colonies.spec import (
    encode_call_kwargs,
    encode_result,
    parse_process,
)
from faas_sandbox.errors import SpecError
from tests.unit.test_names import KEYWORD_NAMES, NOT_FUNCTION_NAMES, NOT_KEYWORD_NAMES

PID = "a" * 64


def process(spec: dict, **extra: object) -> dict:
    return {"processid": PID, "spec": spec, "attributes": [], **extra}


def execute(kwargs: dict | None, **spec: object) -> dict:
    return process({"funcname": "execute", "kwargs": kwargs, "args": [], "maxexectime": -1, **spec})


def test_tutorial_spec_passes_arg_as_float():
    call = parse_process(execute({"function": "convert", "arg": "21"}))
    assert (call.function, call.args, call.kwargs, call.source) == ("convert", (21.0,), {}, None)
    assert isinstance(call.args[0], float)
    assert call.form == "tutorial"
    assert call.processid == PID


@pytest.mark.parametrize("arg", ["hot", "", "21 C", "0x10"])
def test_tutorial_non_numeric_arg_is_a_spec_error(arg):
    with pytest.raises(SpecError, match=r"kwargs\.arg is not a number"):
        parse_process(execute({"function": "convert", "arg": arg}))


@pytest.mark.parametrize("arg", ["nan", "inf", "-Infinity"])
def test_tutorial_non_finite_arg_is_refused(arg):
    with pytest.raises(SpecError, match="finite"):
        parse_process(execute({"function": "convert", "arg": arg}))


def test_tutorial_arg_accepts_what_float_accepts():
    assert parse_process(execute({"function": "convert", "arg": " -4.5e1 "})).args == (-45.0,)


def test_json_args_and_kwargs():
    kwargs = encode_call_kwargs("scale", [1, [2, 3]], {"factor": 2.5, "name": None})
    assert kwargs == {
        "function": "scale",
        "args": "[1,[2,3]]",
        "kwargs": '{"factor":2.5,"name":null}',
    }
    call = parse_process(execute(kwargs))
    assert call.args == (1, [2, 3])
    assert call.kwargs == {"factor": 2.5, "name": None}
    assert call.form == "json"


def test_spec_args_are_positional():
    call = parse_process(execute({"function": "add"}, args=["1", 2]))
    assert call.args == ("1", 2)
    assert call.kwargs == {}


def test_real_json_values_from_non_pycolonies_clients_are_taken_as_is():
    call = parse_process(execute({"function": "f", "args": [1, 2], "kwargs": {"k": [3]}}))
    assert call.args == (1, 2)
    assert call.kwargs == {"k": [3]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"function": "f", "args": "{"}, "kwargs.args is not valid JSON"),
        ({"function": "f", "args": '{"a": 1}'}, "kwargs.args must be JSON text of an array"),
        ({"function": "f", "kwargs": "[1]"}, "kwargs.kwargs must be JSON text of an object"),
        ({"function": "f", "args": "[NaN]"}, "not valid JSON"),
        ({"function": "f", "kwargs": '{"not-an-id": 1}'}, "not an identifier"),
        ({"function": "f", "args": 5}, "must be JSON text"),
        ({"function": "f", "arg": "1", "args": "[]"}, "cannot be combined"),
        ({"function": "f", "argz": "[]"}, "unknown kwargs"),
        ({"arg": "1"}, "kwargs.function is missing"),
        (None, "kwargs.function is missing"),
    ],
)
def test_malformed_execute_kwargs_are_spec_errors(kwargs, message):
    with pytest.raises(SpecError, match=message):
        parse_process(execute(kwargs))


def test_args_in_two_places_is_refused():
    with pytest.raises(SpecError, match="not both"):
        parse_process(execute({"function": "f", "args": "[1]"}, args=[2]))


def test_deeply_nested_args_are_a_spec_error_not_a_crash():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SpecError, match="nested deeper than 64 levels"):
        parse_process(execute({"function": "f", "args": deep}))


def test_args_text_over_the_size_cap_is_refused_before_parsing():
    big = "[" + "1," * 600 + "1]"
    with pytest.raises(SpecError, match="over the limit of 1000 bytes"):
        parse_process(execute({"function": "f", "args": big}), max_args_bytes=1000)
    assert parse_process(execute({"function": "f", "args": "[1]"}), max_args_bytes=1000).args == (
        1,
    )


@pytest.mark.parametrize("name", [n for n in NOT_KEYWORD_NAMES if isinstance(n, str)])
def test_keyword_names_follow_the_one_rule_in_json_and_inline_specs(name):
    """names.keyword_name, the rule the HTTP front end applies too: ASCII identifiers only."""
    with pytest.raises(SpecError, match=r"keyword argument name .* is not an identifier"):
        parse_process(execute({"function": "f", "kwargs": json.dumps({name: 1})}))
    code = base64.b64encode(b"def f(**kw):\n    return kw\n").decode()
    inline = process({"funcname": "f", "kwargs": {name: "1"}, "env": {"code": code}})
    with pytest.raises(SpecError, match=r"keyword argument name .* is not an identifier"):
        parse_process(inline)


@pytest.mark.parametrize("name", KEYWORD_NAMES)
def test_ascii_keyword_names_pass_as_they_are(name):
    assert parse_process(execute({"function": "f", "kwargs": json.dumps({name: 1})})).kwargs == {
        name: 1
    }


@pytest.mark.parametrize("name", NOT_FUNCTION_NAMES)
def test_function_names_with_path_characters_or_non_identifiers_are_refused(name):
    with pytest.raises(SpecError, match="invalid function name"):
        parse_process(execute({"function": name, "arg": "1"}))


@pytest.mark.parametrize(
    "spec",
    [
        {"kwargs": {"function": "f"}},
        {"funcname": "", "kwargs": {}},
        {"funcname": "execute", "args": "oops"},
        {"funcname": "execute", "kwargs": ["function"]},
    ],
)
def test_malformed_specs_are_spec_errors(spec):
    with pytest.raises(SpecError):
        parse_process(process(spec))


def test_a_process_without_spec_or_id_is_a_spec_error():
    with pytest.raises(SpecError, match="no spec"):
        parse_process({"processid": PID})
    with pytest.raises(SpecError, match="no processid"):
        parse_process({"spec": {"funcname": "execute"}})


def test_other_funcname_without_code_is_refused_with_a_hint():
    with pytest.raises(SpecError, match='use funcname "execute"'):
        parse_process(process({"funcname": "convert", "args": [1]}))


def sample(a, b=2):
    return a + b


def test_inline_code_as_pycolonies_func_spec_writes_it():
    from pycolonies import func_spec  # the real helper, as tutorial Option 3 users call it

    spec = func_spec(
        func=sample,
        args=[1, "x"],
        colonyname="dev",
        executortype="faas-executor",
        maxexectime=5,
        maxretries=0,
    ).model_dump(by_alias=True)
    call = parse_process(process(spec))
    assert call.function == "sample"
    assert call.args == (1, "x")
    assert call.source == inspect.getsource(sample)
    assert call.maxexectime == 5
    assert call.form == "inline"


def test_inline_code_from_env_attributes_and_indented_source():
    source = "    def nested(x):\n        return x * 2\n"
    code = base64.b64encode(source.encode()).decode()
    attrs = [{"key": "code", "value": code, "targetid": PID, "attributetype": 3}]
    call = parse_process(process({"funcname": "nested", "args": [4], "env": {}}, attributes=attrs))
    assert call.source == "def nested(x):\n    return x * 2\n"
    assert call.args == (4,)


def test_inline_code_that_is_not_base64_is_a_spec_error():
    with pytest.raises(SpecError, match="base64"):
        parse_process(process({"funcname": "f", "env": {"code": "%%%"}}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-1, None), (0, None), (None, None), ("5", None), (True, None), (7, 7), (2.9, 2)],
)
def test_maxexectime_zero_or_negative_means_policy_default(value, expected):
    call = parse_process(execute({"function": "f", "arg": "1"}, maxexectime=value))
    assert call.maxexectime == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (69.8, 69.8),
        (3, 3),
        ("text", "text"),
        ("", ""),
        (True, "true"),
        (None, "null"),
        ([1, "a"], '[1,"a"]'),
        ({"a": {"b": 1}}, '{"a":{"b":1}}'),
        (2**53, 2**53),
        (2**53 + 1, str(2**53 + 1)),
        (-(2**60), str(-(2**60))),
        ("21", '"21"'),
        ("a\x00b", "a\x00b"),
        (["\ud800"], '["\\ud800"]'),
    ],
)
def test_results_are_numbers_or_strings(value, expected):
    encoded = encode_result(value)
    assert encoded == expected
    assert type(encoded) in (int, float, str)


@pytest.mark.parametrize("value", [math.inf, math.nan, [1, -math.inf], "bad \ud800 text"])
def test_results_without_an_element_are_refused(value):
    with pytest.raises(ValueError, match=r"not JSON compliant|lone surrogate"):
        encode_result(value)


def test_structured_results_round_trip_as_json_text():
    value = {"items": [1, 2.5, None, True], "name": "x"}
    assert json.loads(encode_result(value)) == value  # type: ignore[arg-type]


def test_encoded_results_are_readable_by_the_pycolonies_process_model():
    from model import Process  # pycolonies' own model; it accepts only str/int/float in out

    out = [encode_result(v) for v in (69.8, 1, "s", None, [1], {"a": 1}, 2**64, "21")]
    template = {
        "processid": PID,
        "initiatorid": "i",
        "initiatorname": "n",
        "assignedexecutorid": "",
        "isassigned": False,
        "state": 2,
        "prioritytime": 0,
        "retries": 0,
        "attributes": [],
        "submissiontime": "0001-01-01T00:00:00Z",
        "starttime": "0001-01-01T00:00:00Z",
        "endtime": "0001-01-01T00:00:00Z",
        "waitdeadline": "0001-01-01T00:00:00Z",
        "execdeadline": "0001-01-01T00:00:00Z",
        "spec": {"conditions": {"executortype": "t"}},
        "parents": [],
        "children": [],
        "processgraphid": "",
        "in": [],
        "out": out,
        "errors": [],
    }
    assert Process(**template).output == out


@pytest.mark.parametrize(
    "value",
    [
        69.8,
        21,
        "hello",
        "21",
        "[1]",
        "true",
        "null",
        '"quoted"',
        "",
        [1, "a"],
        {"a": [1]},
        True,
        None,
        2**60,
        "NaN text?",
    ],
)
def test_every_result_round_trips_unambiguously(value: object) -> None:
    from faas_sandbox.colonies.spec import decode_result, encode_result

    encoded = encode_result(value)
    assert isinstance(encoded, (str, int, float)) and not isinstance(encoded, bool)
    assert decode_result(encoded) == value
