"""Request limits of validation: nesting depth, counts, ids, bounded answers, Backend 2 URLs, speed.

No Ray. Timings are printed (`pytest -s`) and asserted only against generous bounds.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.uri import parse_uri

from engine.limits import MAX_VALUE_DEPTH
from engine.models import MAX_ID_LENGTH, id_problem
from engine.settings import Settings
from engine.validation import (
    MAX_MESSAGE_CHARS,
    MAX_PATH_CHARS,
    Problem,
    backend2_ws_url_problem,
    bound_problems,
)
from tests.engine_doubles import flow, validate_request
from web.schemas import problems_body

MAX_422_BYTES = 64 * 1024
SETTINGS = Settings(_env_file=None)


def answer(body: Any, settings: Settings = SETTINGS) -> tuple[dict[tuple[str, str], str], str]:
    """Problems by (path, severity), and the JSON of the 422 body as the service would send it."""
    result = validate_request(body, settings)
    found = {(p.path, p.severity): p.message for p in result.problems}
    return found, json.dumps(problems_body("invalid", [p.as_dict() for p in result.problems]), ensure_ascii=False)


def nested(depth: int, leaf: Any = 1) -> Any:
    """A value `depth` containers deep (lists)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def simple(**extra: Any) -> dict[str, Any]:
    return flow({"s": {"type": "test_echo", **extra}}, [])


# --- 1. nesting depth ---------------------------------------------------------------------------


def test_initial_inputs_at_the_depth_limit_pass_one_deeper_is_refused_at_its_key():
    body = simple()
    body["initial_inputs"] = {"x": nested(MAX_VALUE_DEPTH - 1)}  # with initial_inputs itself: 100 levels
    assert validate_request(json.dumps(body), SETTINGS).ok
    body["initial_inputs"] = {"ok": 1, "x": nested(MAX_VALUE_DEPTH)}
    found, _ = answer(json.dumps(body))
    assert found == {("initial_inputs.x", "error"): f"is nested deeper than {MAX_VALUE_DEPTH} levels"}


@pytest.mark.parametrize(
    ("element", "path"),
    [
        ({"type": "data_block", "data": nested(MAX_VALUE_DEPTH + 1)}, "flow_definition.elements.s.data"),
        ({"type": "data_block", "config": {"data": nested(101)}}, "flow_definition.elements.s.config.data"),
        ({"type": "selector", "path": "a", "default": {"d": nested(150)}}, "flow_definition.elements.s.default"),
        ({"type": "test_echo", "input_schema": {"p": {"type": "any", "x": nested(200)}}}, "flow_definition.elements.s.input_schema"),
        (
            {"type": "case", "cases": [{"id": "a", "conditions": [{"field": "x", "operator": "==", "value": nested(120)}]}]},
            "flow_definition.elements.s.cases",
        ),
    ],
)  # fmt: skip
def test_every_free_form_value_of_an_element_has_the_depth_limit(element, path):
    found, _ = answer(json.dumps(flow({"s": element}, [])))
    assert found == {(path, "error"): f"is nested deeper than {MAX_VALUE_DEPTH} levels"}


def test_deep_values_elsewhere_in_the_request_are_refused_at_their_path():
    body = simple()
    body["config"]["deep"] = nested(300)
    body["flow_definition"]["connections"] = [{"from_id": "s", "to_id": "s", "meta": nested(300)}]
    body["flow_definition"]["layout"] = {"x": nested(300)}
    found, _ = answer(json.dumps(body))
    assert set(found) == {
        ("config", "error"),
        ("flow_definition.connections[0]", "error"),
        ("flow_definition.layout", "error"),
    }


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 1_000_000,
        b'{"a":' * 200_000,
        b'{"flow_id": "x", "initial_inputs": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
        b'{"initial_inputs": {"x": ' + b"[" * 1_200 + b"]" * 1_200 + b"}}",
        b'{"initial_inputs": {"x": ' + b"{" * 500,
    ],
    ids=["1MB-of-[", "200k-objects", "100k-deep-inputs", "1200-deep-inputs", "truncated"],
)
def test_very_deep_bodies_never_raise(raw):
    started = time.perf_counter()
    result = validate_request(raw, SETTINGS)
    elapsed = time.perf_counter() - started
    print(f"{len(raw):,} bytes refused in {elapsed * 1000:.1f} ms")
    assert not result.ok and result.errors
    assert elapsed < 10


def test_a_parsed_value_100_000_deep_is_refused_without_recursion():
    body = simple()
    body["initial_inputs"] = {"x": nested(100_000)}
    found, _ = answer(body)
    assert found == {("initial_inputs.x", "error"): f"is nested deeper than {MAX_VALUE_DEPTH} levels"}


# --- 2. counts ------------------------------------------------------------------------------------


def test_fifty_thousand_elements_are_refused_by_the_count_alone_and_quickly():
    elements = {f"e{i}": {"type": "nope", "element_id": f"e{i}" * 3} for i in range(50_000)}
    raw = json.dumps(flow(elements, [("s", f"e{i}") for i in range(6000)], start="e0"))
    started = time.perf_counter()
    found, _ = answer(raw)
    print(f"50,000 elements ({len(raw) / 1e6:.1f} MB) refused in {(time.perf_counter() - started) * 1000:.0f} ms")
    assert found == {
        ("flow_definition.elements", "error"): "has 50,000 elements; at most 1,000 are allowed (MAX_FLOW_ELEMENTS)",
        ("flow_definition.connections", "error"): (
            "has 6,000 connections; at most 5,000 are allowed (MAX_FLOW_CONNECTIONS)"
        ),
    }


def test_count_limits_come_from_the_settings():
    body = flow(
        {f"e{i}": {"type": "test_echo"} for i in range(4)}, [("e0", "e1"), ("e1", "e2"), ("e2", "e3")], start="e0"
    )
    assert validate_request(body, SETTINGS).ok
    found, _ = answer(body, Settings(_env_file=None, max_flow_elements=3, max_flow_connections=2))
    assert set(found) == {("flow_definition.elements", "error"), ("flow_definition.connections", "error")}
    assert "at most 3 are allowed (MAX_FLOW_ELEMENTS)" in found[("flow_definition.elements", "error")]


# --- 3. ids ---------------------------------------------------------------------------------------

BAD_IDS = {
    "ESC": "a\x1b[2Jb",
    "NUL": "a\x00b",
    "FS": "a\x1cb",
    "DEL": "a\x7fb",
    "C1": "a\x85b",
    "RLO": "a\u202eb",
    "LRI": "a\u2066b",
    "LRM": "a\u200eb",
    "ALM": "a\u061cb",
    "LS": "a\u2028b",
    "PS": "a\u2029b",
    "tab": "a\tb",
    "surrogate": "a\ud800b",
    "too-long": "k" * (MAX_ID_LENGTH + 1),
    "empty": "",
}


def _with_bad_id(where: str, bad: str) -> tuple[dict[str, Any], str]:
    """A valid flow with `bad` at one id position, and the path its problem must have."""
    elements = {
        "s": {"type": "test_echo", "output_schema": {"out": {}}},
        "a": {"type": "test_echo", "input_schema": {"inp": {}}},
        "r": {"type": "flow_select", "branches": ["yes"]},
    }
    connections = [("s", "a", "out", "inp"), ("s", "r")]
    body = flow(elements, connections)
    definition = body["flow_definition"]
    paths = {
        "flow_id": "flow_id",
        "definition_flow_id": "flow_definition.flow_id",
        "element_key": "flow_definition.elements",
        "element_id": "flow_definition.elements.a.element_id",
        "start_element_id": "flow_definition.start_element_id",
        "from_id": "flow_definition.connections[0].from_id",
        "to_id": "flow_definition.connections[0].to_id",
        "from_output": "flow_definition.connections[0].from_output",
        "to_input": "flow_definition.connections[0].to_input",
        "connection_id": "flow_definition.connections[1].id",
        "input_port": "flow_definition.elements.a.input_schema",
        "output_port": "flow_definition.elements.s.output_schema",
        "branch": "flow_definition.elements.r.branches[0]",
        "case_id": "flow_definition.elements.r.cases[0].id",
    }
    if where == "flow_id":
        body["flow_id"] = bad
    elif where == "definition_flow_id":
        definition["flow_id"] = bad
    elif where == "element_key":
        definition["elements"][bad] = definition["elements"].pop("a") | {"element_id": "a"}
    elif where == "element_id":
        definition["elements"]["a"]["element_id"] = bad
    elif where == "start_element_id":
        definition["start_element_id"] = bad
    elif where in ("from_id", "to_id", "from_output", "to_input"):
        definition["connections"][0][where] = bad
    elif where == "connection_id":
        definition["connections"][1]["id"] = bad
    elif where == "input_port":
        definition["elements"]["a"]["input_schema"] = {"inp": {}, bad: {}}
    elif where == "output_port":
        definition["elements"]["s"]["output_schema"] = {"out": {}, bad: {}}
    elif where == "branch":
        definition["elements"]["r"]["branches"] = [bad]
    elif where == "case_id":
        definition["elements"]["r"] = {
            "type": "case",
            "element_id": "r",
            "cases": [{"id": bad, "conditions": [{"field": "x", "operator": "is_empty"}]}],
        }
    return body, paths.get(where, "$")


ID_PLACES = [
    "flow_id", "definition_flow_id", "element_key", "element_id", "start_element_id", "from_id", "to_id",
    "from_output", "to_input", "connection_id", "input_port", "output_port", "branch", "case_id",
]  # fmt: skip


def test_the_id_fixture_is_valid_without_a_bad_id():
    body, _ = _with_bad_id("nowhere", "unused")
    assert validate_request(json.dumps(body), SETTINGS).ok


@pytest.mark.parametrize("where", ID_PLACES)
@pytest.mark.parametrize("kind", sorted(BAD_IDS))
def test_bad_ids_are_refused_at_their_path_without_echo(where, kind):
    bad = BAD_IDS[kind]
    body, path = _with_bad_id(where, bad)
    raw = json.dumps(body)  # ASCII with \u escapes: exactly what a client may send
    found, out = answer(raw)
    assert (path, "error") in found, (path, found)
    message = found[(path, "error")]
    if kind == "too-long":
        assert f"longer than {MAX_ID_LENGTH}" in message
        assert "k" * (MAX_ID_LENGTH + 1) not in out
    elif kind == "empty":
        assert "must not be empty" in message or "at least 1 character" in message or "pattern" in message
    else:
        # Names the code point, not the text (pydantic refuses a lone surrogate in a plain str field itself).
        assert "U+" in message or "pattern" in message or "unicode string" in message, message
    # No echo: neither the bad value nor its odd character appears anywhere in the 422 body.
    if bad:
        assert bad not in out
    for char in bad:
        assert char.isprintable() or char not in out


def test_unicode_ids_that_are_printable_are_accepted():
    for good in ("é", "流程-1", "🙂", "a b", "x" * MAX_ID_LENGTH):
        body = flow({"s": {"type": "test_echo"}, good: {"type": "test_echo"}}, [("s", good)])
        assert validate_request(json.dumps(body), SETTINGS).ok, good
        assert id_problem(good) is None


def test_the_unknown_type_message_does_not_echo_a_bad_type():
    found, out = answer(json.dumps(flow({"s": {"type": "x\x1b]0;owned\x07"}}, [])))
    assert found[("flow_definition.elements.s.type", "error")].startswith("unknown element type (a value not shown)")
    assert "\x1b" not in out and "owned" not in out


# --- 4. bounded answers -----------------------------------------------------------------------------


def test_bound_problems_caps_count_length_and_escapes():
    problems = [Problem("p" * 1000, "m\x1b" * 1000) for _ in range(120)] + [Problem("w", "warn", "warning")]
    bounded = bound_problems(problems, 50)
    assert len(bounded) == 51
    assert bounded[-1] == Problem("$", "… and 71 more problems", "error")
    assert all(len(p.path) <= MAX_PATH_CHARS and len(p.message) <= MAX_MESSAGE_CHARS for p in bounded)
    assert all(p.message.isprintable() and "\\x1b" in p.message for p in bounded[:-1])
    warnings_first = bound_problems([Problem("w", "warn", "warning"), Problem("e", "err")], 1)
    assert warnings_first == [Problem("e", "err"), Problem("$", "… and 1 more problem", "warning")]


def test_one_cycle_problem_per_strongly_connected_component_with_a_short_message():
    # Component 1: a chain e1..e600 with a back-edge from every element to e1; component 2: x ⇄ y.
    elements = {"s": {"type": "test_echo"}} | {f"e{i}": {"type": "test_echo"} for i in range(1, 601)}
    elements |= {"x": {"type": "test_echo"}, "y": {"type": "test_echo"}}
    connections = [("s", "e1")] + [(f"e{i}", f"e{i + 1}") for i in range(1, 600)]
    connections += [(f"e{i}", "e1") for i in range(3, 601)] + [("s", "x"), ("x", "y"), ("y", "x")]
    result = validate_request(flow(elements, connections), SETTINGS)
    cycles = [p.message for p in result.errors if p.message.startswith("cycle:")]
    assert cycles == [
        "cycle: e1 → e2 → e3 → e1; 600 elements in all are on cycles through one another",
        "cycle: x → y → x",
    ]
    long_chain = flow({"s": {"type": "test_echo"}} | {f"e{i}": {"type": "test_echo"} for i in range(9)}, [])
    long_chain["flow_definition"]["connections"] = [{"from_id": f"e{i}", "to_id": f"e{(i + 1) % 9}"} for i in range(9)]
    (message,) = [p.message for p in validate_request(long_chain, SETTINGS).errors]
    assert message == "cycle: e0 → e1 → e2 → e3 → e4 → … (9 elements)"


def test_known_types_are_listed_once_and_known_ports_are_capped():
    elements = {"s": {"type": "test_echo", "output_schema": {f"port{i}": {} for i in range(300)}}}
    elements |= {"u1": {"type": "nope"}, "u2": {"type": "nada"}}
    found, _ = answer(flow(elements, [("s", "u1", "bad"), ("s", "u2")]))
    first = found[("flow_definition.elements.u1.type", "error")]
    assert "known: " in first and "test_echo" in first
    assert found[("flow_definition.elements.u2.type", "error")] == (
        "unknown element type 'nada'; the known types are listed at flow_definition.elements.u1.type"
    )
    ports = found[("flow_definition.connections[0].from_output", "error")]
    assert ports.endswith(", … (300 in all)") and ports.count(",") == 10


def _pathological_bodies() -> dict[str, bytes]:
    """Bodies of 1–5 MB that used to produce answers of 40–640 MB, within the count limits or not."""
    bodies: dict[str, Any] = {}
    n = 1000
    chain = {"s": {"type": "test_echo"}} | {f"e{i}": {"type": "test_echo"} for i in range(n - 1)}
    back_edges = [("s", "e0")] + [(f"e{i}", f"e{i + 1}") for i in range(n - 2)]
    back_edges += [(f"e{i}", "e0") for i in range(1, n - 1)]
    bodies["cycles: 1,000-element chain, a back-edge from each"] = flow(chain, back_edges)
    pairs = {"s": {"type": "test_echo"}} | {f"p{i}": {"type": "test_echo"} for i in range(n - 1)}
    pair_edges = [(f"p{i}", f"p{i + 1}") for i in range(0, n - 2, 2)] + [
        (f"p{i + 1}", f"p{i}") for i in range(0, n - 2, 2)
    ]
    bodies["cycles: 499 separate 2-cycles"] = flow(pairs, pair_edges)
    bodies["cycles: 10,000-element chain (over the count)"] = flow(
        {f"e{i}": {"type": "test_echo"} for i in range(10_000)},
        [(f"e{i}", f"e{i + 1}") for i in range(9_999)] + [(f"e{i}", "e1") for i in range(2, 10_000)],
        start="e0",
    )
    long_name = "t" * 100
    bodies["unknown types: 1,000 elements"] = flow(
        {"s": {"type": "test_echo"}} | {f"u{i}-{long_name}": {"type": f"nope-{i}-" + "x" * 90} for i in range(n - 1)},
        [],
    )
    bodies["unknown types: 100,000 elements (over the count)"] = flow(
        {f"u{i}": {"type": "nope"} for i in range(100_000)}, []
    )
    ports = {f"port{i}-{'q' * 100}": {} for i in range(5000)}
    bodies["bad port names: 5,000 connections naming none of 5,000 ports"] = flow(
        {"s": {"type": "test_echo", "output_schema": ports}, "a": {"type": "test_echo", "input_schema": ports}},
        [("s", "a", f"bad{i}-{'z' * 110}", f"bad{i}-{'z' * 110}") for i in range(5000)],
    )
    bad = "\x1b[2J\u202e" + "x" * 100
    bodies["bad ids: 5,000 connections and 1,000 keys"] = flow(
        {"s": {"type": "test_echo"}}
        | {
            f"{bad}{i}": {"type": "test_echo", "input_schema": {f"{bad}{j}": {} for j in range(8)}}
            for i in range(n - 1)
        },
        [(f"{bad}{i}", f"{bad}{i + 1}", bad, bad) for i in range(5000)],
    )
    bodies["bad config: 1,000 elements with 200 unknown keys each"] = flow(
        {"s": {"type": "test_echo"}}
        | {f"e{i}": {"type": "test_echo", **{f"bogus-{j}-{'b' * 10}": 0 for j in range(200)}} for i in range(n - 1)},
        [],
    )
    bodies["deep: 1,000 elements with data nested 1,000 deep"] = flow(
        {"s": {"type": "test_echo"}} | {f"d{i}": {"type": "data_block", "data": nested(900)} for i in range(n - 1)}, []
    )
    return {name: json.dumps(body).encode() for name, body in bodies.items()}  # fmt: skip


@pytest.mark.parametrize("name", list(_pathological_bodies()))
def test_pathological_bodies_get_small_answers_in_bounded_time(name):
    raw = _pathological_bodies()[name]
    assert len(raw) <= 1.1 * SETTINGS.max_request_bytes or "over the count" in name
    started = time.perf_counter()
    result = validate_request(raw, SETTINGS)
    elapsed = time.perf_counter() - started
    out = json.dumps(problems_body("the flow is invalid; nothing was started", [p.as_dict() for p in result.problems]))
    print(f"{name}: {len(raw) / 1e6:.2f} MB body → {len(out):,} byte 422 in {elapsed:.2f} s")
    assert not result.ok
    assert len(out) <= MAX_422_BYTES
    assert len(result.problems) <= SETTINGS.max_reported_problems + 1
    assert elapsed < 10


# --- 5. Backend 2 URLs ------------------------------------------------------------------------------

REFUSED_URLS = [
    "ws://user@backend2/ws",
    "ws://user:secret@backend2/ws",
    "ws://backend2/ws#fragment",
    "ws://backend2/ws#",
    "http://backend2/ws",
    "wss:///ws",
    "ws://:80/ws",
    "ws://backend2/w s",
    "ws://backend2/ws\x1b[2J",
    "ws://backend2/ws\n",
    "ws://backend2/\u202ews",
    "ws://backend2:0/ws",
    "ws://backend2:65536/ws",
    "ws://backend2:port/ws",
    "ws://[::1/ws",
    "ws://\u202ebackend2/ws",
]
ACCEPTED_URLS = [
    "ws://127.0.0.1:9/ws",
    "wss://backend2.example/ws/f?token=1",
    "ws://[::1]:8001/ws",
    "ws://bäckend.example/ws",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_backend2_urls_the_client_would_refuse_are_refused_without_echo(url):
    body = simple()
    body["backend2_ws_url"] = url
    found, out = answer(json.dumps(body))
    assert ("backend2_ws_url", "error") in found
    assert url not in out and "secret" not in out and "\x1b" not in out


@pytest.mark.parametrize("url", ACCEPTED_URLS)
def test_backend2_urls_the_client_accepts_are_accepted(url):
    body = simple()
    body["backend2_ws_url"] = url
    assert validate_request(json.dumps(body), SETTINGS).ok
    parse_uri(url)  # the client agrees


@pytest.mark.parametrize("url", REFUSED_URLS + ACCEPTED_URLS + ["ws://a@b:c@d/", "wss://h:443", "ws://h?q#", "ws:/h/x"])
def test_whatever_the_websockets_client_refuses_validation_refuses(url):
    try:
        parse_uri(url)
    except Exception:  # noqa: BLE001 — any refusal of the client's
        assert backend2_ws_url_problem(url) is not None, url


def test_the_allow_list_still_applies():
    body = simple()
    body["backend2_ws_url"] = "ws://evil.example:80/ws"
    found, _ = answer(body, Settings(_env_file=None, backend2_allowed_hosts="127.0.0.1:9000, backend2:8001"))
    message = "is not a destination this service may connect to (see BACKEND2_ALLOWED_HOSTS)"
    assert found == {("backend2_ws_url", "error"): message}  # the host is not echoed


# --- 6. speed ---------------------------------------------------------------------------------------


def test_a_maximal_valid_flow_validates():
    n, m = SETTINGS.max_flow_elements, SETTINGS.max_flow_connections
    ids = ["s", *[f"e{i}" for i in range(1, n)]]
    connections = [(ids[i], ids[i + 1]) for i in range(n - 1)]
    connections += [(ids[i], ids[j]) for i in range(1, n) for j in range(i + 2, min(n, i + 7))][: m - len(connections)]
    raw = json.dumps(flow({i: {"type": "test_echo", "value": {"k": [1, 2, 3]}} for i in ids}, connections))
    validate_request(raw, SETTINGS)  # warm up
    started = time.perf_counter()
    result = validate_request(raw, SETTINGS)
    elapsed = time.perf_counter() - started
    print(
        f"maximal valid flow ({n:,} elements, {len(connections):,} connections, {len(raw) / 1e6:.2f} MB): {elapsed * 1000:.0f} ms"
    )
    assert result.ok and len(result.plan.elements) == n and len(connections) == m
    assert elapsed < 10
