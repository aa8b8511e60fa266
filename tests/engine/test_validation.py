"""Validation before anything runs: every problem, with its JSON path and a plain message."""

import json

from engine.settings import Settings
from engine.validation import json_path
from tests.engine_doubles import flow, validate_request


def problems(body, settings=None):
    result = validate_request(body, settings or Settings())
    return {(p.path, p.severity): p.message for p in result.problems}, result


def test_a_valid_flow_gives_a_plan():
    found, result = problems(flow({"s": {"type": "test_echo"}, "a": {"type": "test_echo"}}, [("s", "a")]))
    assert found == {}
    assert result.ok and set(result.plan.elements) == {"s", "a"}


def test_not_json():
    found, result = problems(b"{not json")
    assert list(found) == [("$", "error")]
    assert "not valid JSON" in found[("$", "error")]
    assert result.plan is None


def test_missing_and_wrong_typed_fields_are_all_reported():
    body = flow({"s": {"type": "test_echo"}}, [])
    del body["flow_id"]
    body["config"] = {"max_execution_time": "soon"}
    body["initial_inputs"] = []
    found, _ = problems(body)
    assert ("flow_id", "error") in found
    assert ("config.max_execution_time", "error") in found
    assert ("initial_inputs", "error") in found


def test_websocket_url_must_be_ws_and_allowed():
    body = flow({"s": {"type": "test_echo"}}, [])
    body["backend2_ws_url"] = "http://example.com/ws"
    found, _ = problems(body)
    assert "ws:// or wss://" in found[("backend2_ws_url", "error")]
    body["backend2_ws_url"] = "ws://evil.example:80/ws"
    found, _ = problems(body, Settings(backend2_allowed_hosts="127.0.0.1:9000, backend2:8001"))
    assert "BACKEND2_ALLOWED_HOSTS" in found[("backend2_ws_url", "error")]
    body["backend2_ws_url"] = "ws://backend2:8001/ws/f"
    found, _ = problems(body, Settings(backend2_allowed_hosts="127.0.0.1:9000, backend2:8001"))
    assert found == {}
    body["backend2_ws_url"] = "ws://backend2:8002/ws/f"  # an allowed host on another port
    found, _ = problems(body, Settings(backend2_allowed_hosts="127.0.0.1:9000, backend2:8001"))
    assert "BACKEND2_ALLOWED_HOSTS" in found[("backend2_ws_url", "error")]
    body["backend2_ws_url"] = "ws://127.0.0.1:8265/api"  # the Ray dashboard: never, allow-list or not
    found, _ = problems(body)
    assert "BACKEND2_ALLOWED_HOSTS" in found[("backend2_ws_url", "error")]


def test_unknown_type_names_the_known_ones():
    found, _ = problems(flow({"s": {"type": "test_echo"}, "x": {"type": "teleport"}}, [("s", "x")]))
    message = found[("flow_definition.elements.x.type", "error")]
    assert "unknown element type 'teleport'" in message and "test_echo" in message


def test_element_key_must_equal_element_id():
    body = flow({"s": {"type": "test_echo"}}, [])
    body["flow_definition"]["elements"]["s"]["element_id"] = "other"
    found, _ = problems(body)
    assert found[("flow_definition.elements.s.element_id", "error")] == "must equal its key 's'"


def test_dangling_connections():
    found, _ = problems(flow({"s": {"type": "test_echo"}}, [("s", "ghost"), ("phantom", "s")]))
    assert "no element 'ghost'" in found[("flow_definition.connections[0].to_id", "error")]
    assert "no element 'phantom'" in found[("flow_definition.connections[1].from_id", "error")]


def test_unknown_ports_where_declared():
    body = flow(
        {
            "s": {"type": "test_echo", "output_schema": {"text": {"type": "string"}}},
            "a": {"type": "test_echo", "input_schema": {"prompt": {"type": "string"}}},
            "r": {"type": "test_route"},
        },
        [("s", "a", "txt", "promt"), ("s", "r"), ("r", "a", "maybe")],
    )
    found, _ = problems(body)
    assert "has no output 'txt'; known: text" in found[("flow_definition.connections[0].from_output", "error")]
    assert "has no input 'promt'; known: prompt" in found[("flow_definition.connections[0].to_input", "error")]
    assert (
        "no output 'maybe'; known: default, no, yes" in found[("flow_definition.connections[2].from_output", "error")]
    )


def test_cycles_are_reported_with_their_path():
    found, _ = problems(
        flow({k: {"type": "test_echo"} for k in "sabc"}, [("s", "a"), ("a", "b"), ("b", "c"), ("c", "a")])
    )
    assert found[("flow_definition.connections", "error")] == "cycle: a → b → c → a"


def test_start_missing_or_fed():
    found, _ = problems(flow({"s": {"type": "test_echo"}}, [], start="nope"))
    assert "no element 'nope'" in found[("flow_definition.start_element_id", "error")]
    found, _ = problems(flow({"s": {"type": "test_echo"}, "a": {"type": "test_echo"}}, [("s", "a"), ("a", "s")]))
    assert "cannot have inputs" in found[("flow_definition.connections[1].to_id", "error")]


def test_bad_type_specific_config_is_reported_at_its_field():
    found, _ = problems(flow({"s": {"type": "test_echo", "seconds": "long", "bogus": 1}}, []))
    assert ("flow_definition.elements.s.seconds", "error") in found
    assert ("flow_definition.elements.s.bogus", "error") in found
    found, _ = problems(flow({"s": {"type": "test_echo", "config": {"seconds": "long"}}}, []))
    assert ("flow_definition.elements.s.config.seconds", "error") in found


def test_unreachable_elements_are_warnings_not_errors():
    found, result = problems(flow({"s": {"type": "test_echo"}, "lonely": {"type": "test_echo"}}, []))
    assert found == {("flow_definition.elements.lonely", "warning"): "is not reachable from the start element"}
    assert result.ok


def test_every_problem_at_once():
    body = flow({"s": {"type": "test_echo"}, "x": {"type": "nope"}}, [("s", "ghost")], start="s")
    body["backend2_ws_url"] = "tcp://x"
    found, _ = problems(body)
    assert len([k for k in found if k[1] == "error"]) == 3


def test_json_path_quotes_odd_keys():
    assert json_path("flow_definition", "elements", "a b", "type") == 'flow_definition.elements["a b"].type'
    assert json_path("connections", 3, "to_id") == "connections[3].to_id"


def test_a_thousand_element_chain_validates_into_a_plan():
    # Its speed (well under 100 ms) is measured by bench/bench_engine.py, not asserted here.
    elements = {"s": {"type": "test_echo"}} | {f"e{i}": {"type": "test_echo"} for i in range(999)}
    connections = [("s", "e0")] + [(f"e{i}", f"e{i + 1}") for i in range(998)]
    result = validate_request(json.dumps(flow(elements, connections)), Settings())
    assert result.ok and len(result.plan.elements) == 1000


def test_ten_thousand_element_chain_with_cycle_does_not_recurse_too_deep():
    elements = {f"e{i}": {"type": "test_echo"} for i in range(10_000)}
    connections = [(f"e{i}", f"e{i + 1}") for i in range(9_999)] + [("e9999", "e1")]
    settings = Settings(max_flow_elements=10_000, max_flow_connections=10_000)
    found, _ = problems(flow(elements, connections, start="e0"), settings)
    assert found[("flow_definition.connections", "error")] == "cycle: e1 → e2 → e3 → e4 → e5 → … (9,999 elements)"


def test_the_builders_position_is_accepted_on_every_element_whatever_its_config_allows():
    body = flow(
        {
            "s": {"type": "start", "position": {"x": 0, "y": 0}},
            "c": {
                "type": "case",
                "position": {"x": 200, "y": 40},
                "cases": [{"id": "a", "conditions": [{"field": "x", "operator": "==", "value": 1}]}],
            },
            "e": {"type": "end", "position": [400, 40]},
        },
        [("s", "c"), ("c", "e", "a")],
    )
    assert validate_request(body, Settings()).errors == []
