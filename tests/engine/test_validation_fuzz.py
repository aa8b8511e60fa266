"""Fuzzing validation: every malformed body is refused with a problem list, never an exception,
and the 422 answer to any body is small and printable."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.settings import Settings
from tests.engine_doubles import validate_request
from tests.malformed_bodies import malformed_bodies, valid_body
from web.schemas import problems_body

MAX_422_BYTES = 64 * 1024
SETTINGS = Settings(_env_file=None)


def _check_answer(body: Any) -> None:
    """Never raises; the 422 body is bounded and its text printable (no control characters)."""
    result = validate_request(body, SETTINGS)
    out = problems_body("invalid", [p.as_dict() for p in result.problems])
    assert len(json.dumps(out)) <= MAX_422_BYTES
    assert len(result.problems) <= SETTINGS.max_reported_problems + 1
    for problem in out["problems"]:
        assert problem["path"] and problem["message"]
        assert problem["path"].isprintable() and problem["message"].isprintable()


def test_the_unmutated_body_is_valid():
    assert validate_request(valid_body(), SETTINGS).ok


def test_a_thousand_malformed_bodies_each_get_problems():
    for body in malformed_bodies(1000):
        result = validate_request(body, SETTINGS)
        assert not result.ok, body[:200]
        assert result.errors, body[:200]
        assert all(p.path and p.message for p in result.errors)
        _check_answer(body)


# Text with what attackers use: control characters, bidi controls, line separators, surrogates.
_odd_text = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from("\x00\x1b\x1c\x7f\x85\u202e\u2066\u200e\u061c\u2028\u2029\ud800\n\t "),
    ),
    max_size=40,
) | st.sampled_from(["s", "e", "start", "end", "ws://127.0.0.1:9/ws", "x" * 300])

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _odd_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_odd_text, children, max_size=4),
    max_leaves=20,
)


@st.composite
def _deep(draw: st.DrawFn) -> Any:
    value: Any = draw(_json_values)
    for _ in range(draw(st.integers(0, 3000))):
        value = [value] if draw(st.booleans()) else {"k": value}
    return value


_PLACES = [
    ("flow_id",),
    ("backend2_ws_url",),
    ("initial_inputs",),
    ("initial_inputs", "x"),
    ("config",),
    ("flow_definition", "flow_id"),
    ("flow_definition", "start_element_id"),
    ("flow_definition", "elements", "s", "type"),
    ("flow_definition", "elements", "s", "element_id"),
    ("flow_definition", "elements", "e", "data"),
    ("flow_definition", "elements", "e", "config"),
    ("flow_definition", "elements", "e", "input_schema"),
    ("flow_definition", "connections", 0, "from_id"),
    ("flow_definition", "connections", 0, "to_id"),
    ("flow_definition", "connections", 0, "from_output"),
]


@st.composite
def _mutated_body(draw: st.DrawFn) -> Any:
    body = valid_body(draw(st.sampled_from(["fuzz", "a\x1bb", "é"])))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_PLACES))
        target = body
        for key in path[:-1]:
            target = (
                target[key]
                if isinstance(target, dict | list)
                and key in (target if isinstance(target, dict) else range(len(target)))
                else None
            )
            if target is None:
                break
        if isinstance(target, dict):
            target[path[-1]] = draw(_json_values | _deep())
        elif isinstance(target, list) and target:
            target[0] = draw(_json_values)
    if draw(st.booleans()):
        key = draw(_odd_text)
        body["flow_definition"]["elements"][key] = {"type": draw(_odd_text), "element_id": key}
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(_json_values, _deep(), _mutated_body()))
def test_arbitrary_values_never_raise_and_get_bounded_answers(body):
    _check_answer(body)


def _encoded(body: Any) -> bytes:
    try:
        return json.dumps(body).encode("utf-8", "surrogatepass")
    except RecursionError:  # deeper than json can write: what a client could still send
        return b'{"initial_inputs": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(st.binary(max_size=200), _mutated_body().map(_encoded)))
def test_arbitrary_bytes_never_raise_and_get_bounded_answers(raw):
    _check_answer(raw)
    _check_answer(raw.decode("utf-8", "replace"))
