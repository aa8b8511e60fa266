"""`iteration`, `loop` and `sub_flow`: what each outputs, item error modes, loop ends, and the
validation of their inline sub-flows (paths through them, depth, one start, an end). No Ray."""

import pytest

from engine.settings import Settings
from tests.engine_doubles import run_local, validate_request
from tests.nesting_flows import around, chain, sub

SETTINGS = Settings()

FAIL_ON_ODD = sub(
    {
        "s": {"type": "start"},
        "c": {
            "type": "case",
            "cases": [{"id": "odd", "conditions": [{"field": "item", "operator": "==", "value": 1}]}],
        },
        "bad": {"type": "test_fail"},
        "end": {"type": "end"},
    },
    [("s", "c"), ("c", "bad", "odd"), ("c", "end", "default"), ("bad", "end")],
)


async def test_iteration_outputs_results_in_item_order_whatever_order_they_finish_in():
    slow_first = sub(
        {
            "s": {"type": "start"},
            "c": {
                "type": "case",
                "cases": [{"id": "slow", "conditions": [{"field": "index", "operator": "<", "value": 2}]}],
            },
            "slow": {"type": "test_echo", "seconds": 0.1},
            "fast": {"type": "test_echo"},
            "end": {"type": "end"},
        },
        [("s", "c"), ("c", "slow", "slow"), ("c", "fast", "default"), ("slow", "end"), ("fast", "end")],
    )
    iteration = {"type": "iteration", "parallelism": 4, "flow": slow_first}
    snapshot, events = await run_local(around(iteration, {"items": ["a", "b", "c", "d"], "shared": 1}))
    assert snapshot["status"] == "completed"
    results = snapshot["outputs"]["results"]
    assert [r["item"] for r in results] == ["a", "b", "c", "d"]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert all(r["shared"] == 1 and "items" not in r for r in results)
    finished = [e.scope[0]["index"] for e in events if e.type == "element_completed" and e.element_id == "end"]
    assert finished[:2] == [2, 3]  # the slow items finished last


@pytest.mark.parametrize(
    ("mode", "status", "results", "errors"),
    [
        ("fail", "failed", None, None),
        ("continue", "completed", [{"item": 0}, None, {"item": 2}], [1]),
        ("drop", "completed", [{"item": 0}, {"item": 2}], [1]),
    ],
)
async def test_on_item_error_modes(mode, status, results, errors):
    iteration = {"type": "iteration", "on_item_error": mode, "flow": FAIL_ON_ODD}
    snapshot, _ = await run_local(around(iteration, {"items": [0, 1, 2]}))
    assert snapshot["status"] == status
    if mode == "fail":
        assert snapshot["error"]["error_type"] == "test_failure"
        assert snapshot["error"]["message"].startswith("item 1: 'bad' failed: boom")
        return
    outputs = snapshot["outputs"]
    assert [None if r is None else {"item": r["item"]} for r in outputs["results"]] == results
    assert [e["index"] for e in outputs["errors"]] == errors
    assert outputs["errors"][0]["error_type"] == "test_failure"


async def test_iteration_fail_mode_cancels_the_items_still_running():
    inner = sub(
        {
            "s": {"type": "start"},
            "c": {
                "type": "case",
                "cases": [{"id": "odd", "conditions": [{"field": "item", "operator": "==", "value": 1}]}],
            },
            "bad": {"type": "test_fail"},
            "slow": {"type": "test_echo", "seconds": 30},
            "end": {"type": "end"},
        },
        [("s", "c"), ("c", "bad", "odd"), ("c", "slow", "default"), ("bad", "end"), ("slow", "end")],
    )
    iteration = {"type": "iteration", "parallelism": 3, "flow": inner}
    snapshot, events = await run_local(around(iteration, {"items": [0, 1, 2]}))
    assert snapshot["status"] == "failed"
    cancelled = [e for e in events if e.type == "element_error" and e.element_id == "slow"]
    assert sorted(e.scope[0]["index"] for e in cancelled) == [0, 2]
    assert {e.data["error_type"] for e in cancelled} == {"cancelled"}


async def test_iteration_of_a_value_that_is_not_a_list_is_an_element_error():
    snapshot, _ = await run_local(around({"type": "iteration", "flow": chain()}, {"items": "abc"}))
    assert snapshot["error"]["error_type"] == "input_invalid"
    assert "input 'items' must be a list, got str" in snapshot["error"]["message"]


async def test_iteration_of_an_empty_list_has_no_results():
    snapshot, _ = await run_local(around({"type": "iteration", "flow": chain()}, {"items": []}))
    assert snapshot["outputs"] == {"results": [], "errors": []}


def counter_flow():
    """A loop body that passes its inputs through and adds `echo: "seen"`."""
    return chain(("x", {"type": "test_echo", "value": "seen"}))


async def test_loop_runs_until_its_condition_holds_and_carries_outputs_forward():
    until = {"conditions": [{"field": "iteration", "operator": ">=", "value": 2}]}
    loop = {"type": "loop", "max_iterations": 10, "until": until, "flow": counter_flow()}
    snapshot, events = await run_local(around(loop, {"start_value": 5}))
    assert snapshot["status"] == "completed"
    outputs = snapshot["outputs"]
    assert outputs["iterations"] == 3 and outputs["until_met"] is True
    assert outputs["start_value"] == 5 and outputs["echo"] == "seen"
    rounds = [e.scope[0]["index"] for e in events if e.type == "element_started" and e.element_id == "x"]
    assert rounds == [0, 1, 2]
    second_round_inputs = [e.data["inputs"] for e in events if e.type == "element_started" and e.element_id == "s"][2]
    assert second_round_inputs["echo"] == "seen"  # the first round's outputs became the second's inputs


async def test_loop_stops_at_max_iterations_when_the_condition_never_holds():
    until = {"conditions": [{"field": "echo", "operator": "==", "value": "never"}]}
    loop = {"type": "loop", "max_iterations": 4, "until": until, "flow": counter_flow()}
    snapshot, _ = await run_local(around(loop))
    assert snapshot["outputs"]["iterations"] == 4
    assert snapshot["outputs"]["until_met"] is False


async def test_sub_flow_outputs_its_end_elements_outputs():
    snapshot, _ = await run_local(around({"type": "sub_flow", "flow": counter_flow()}, {"q": 1}))
    assert snapshot["outputs"] == {"q": 1, "echo": "seen"}


# -- validation ------------------------------------------------------------------------------


def paths(body, settings=SETTINGS):
    return {p.path: p.message for p in validate_request(body, settings).errors}


def test_problems_inside_a_sub_flow_have_paths_through_it():
    bad = chain(("llm", {"type": "llm_text", "wrapper_prompt": "{unclosed"}), ("x", {"type": "no_such_type"}))
    found = paths(around({"type": "iteration", "flow": bad}))
    assert "flow_definition.elements.n.flow.elements.llm.wrapper_prompt" in found
    assert "flow_definition.elements.n.flow.elements.x.type" in found


def test_problems_two_levels_down_and_in_a_nested_config_object():
    innermost = chain(("x", {"type": "test_echo"}))
    innermost["connections"].append({"from_id": "x", "to_id": "ghost"})
    middle = chain(("each", {"type": "iteration", "config": {"flow": innermost}}))
    found = paths(around({"type": "sub_flow", "flow": middle}))
    assert "flow_definition.elements.n.flow.elements.each.config.flow.connections[2].to_id" in found


def test_sub_flows_nested_deeper_than_max_flow_depth_are_refused():
    body = chain(("x", {"type": "test_echo"}))
    for _ in range(3):
        body = chain(("inner", {"type": "sub_flow", "flow": body}))
    top = around({"type": "sub_flow", "flow": body})  # four levels of sub-flows
    assert paths(top, Settings(max_flow_depth=4)) == {}
    found = paths(top, Settings(max_flow_depth=3))
    deep = "flow_definition.elements.n.flow.elements.inner.flow.elements.inner.flow.elements.inner.flow"
    assert found == {deep: "sub-flows are nested more than 3 levels deep (MAX_FLOW_DEPTH)"}


def test_a_sub_flow_needs_an_end_and_one_start_and_cannot_wait():
    no_end = sub({"s": {"type": "start"}, "x": {"type": "test_echo"}}, [("s", "x")])
    assert (
        "a sub-flow needs an end element"
        in paths(around({"type": "sub_flow", "flow": no_end}))["flow_definition.elements.n.flow.elements"]
    )
    two_starts = chain(("s2", {"type": "start"}))
    assert (
        "exactly one start"
        in paths(around({"type": "sub_flow", "flow": two_starts}))["flow_definition.elements.n.flow.elements.s2"]
    )
    waits = chain(("w", {"type": "wait_for_input"}))
    assert (
        "cannot be inside a sub-flow"
        in paths(around({"type": "iteration", "flow": waits}))["flow_definition.elements.n.flow.elements.w.type"]
    )


def test_limits_of_iteration_and_loop_settings():
    found = paths(around({"type": "iteration", "parallelism": 17, "flow": chain()}))
    assert found == {"flow_definition.elements.n.parallelism": "must be at most 16 (MAX_ITERATION_PARALLELISM)"}
    found = paths(around({"type": "loop", "max_iterations": 5000, "flow": chain()}))
    assert found == {"flow_definition.elements.n.max_iterations": "must be at most 1,000 (MAX_LOOP_ITERATIONS)"}
    found = paths(around({"type": "loop", "flow": chain()}))
    assert found == {"flow_definition.elements.n.max_iterations": "Field required"}
    until = {"conditions": [{"field": "x", "operator": "~~"}]}
    found = paths(around({"type": "loop", "max_iterations": 2, "until": until, "flow": chain()}))
    assert list(found) == ["flow_definition.elements.n.until.conditions[0].operator"]


def test_the_elements_of_every_level_count_against_max_flow_elements():
    inner = chain(*[(f"x{i}", {"type": "test_echo"}) for i in range(6)])  # 8 elements
    body = around({"type": "sub_flow", "flow": inner})  # 3 + 8
    assert paths(body, Settings(max_flow_elements=11)) == {}
    found = paths(body, Settings(max_flow_elements=10))
    assert "at most 10 are allowed in all (MAX_FLOW_ELEMENTS)" in found["flow_definition.elements.n.flow.elements"]


def test_a_bad_element_key_inside_a_sub_flow_is_reported_by_position():
    inner = chain(("x", {"type": "test_echo"}))
    inner["elements"]["bad\x1bkey"] = {"type": "test_echo", "element_id": "bad\x1bkey"}
    found = paths(around({"type": "sub_flow", "flow": inner}))
    assert found == {
        "flow_definition.elements.n.flow.elements[<key not shown>].element_id": (
            "is not a valid id: contains a control character (U+001B) at character 4; ids must be printable"
        )
    }
    inner["elements"]["bad\x1bkey"]["element_id"] = "fine"
    found = paths(around({"type": "sub_flow", "flow": inner}))
    assert "element key #4 contains a control character" in found["flow_definition.elements.n.flow.elements"]
