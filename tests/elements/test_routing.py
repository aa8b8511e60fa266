"""case and flow_select: conditions, operators, branch choice, config errors."""

import pytest
from pydantic import ValidationError

from engine.errors import ElementError
from tests.element_helpers import make_element, run_element


def case_of(conditions, combinator="all", case_id="hit"):
    return {"cases": [{"id": case_id, "combinator": combinator, "conditions": conditions}]}


@pytest.mark.parametrize(
    ("op", "actual", "value", "expected"),
    [
        ("==", 3, 3, True), ("==", "a", "b", False), ("!=", 1, 2, True),
        (">", 5, 3, True), (">", 3, 3, False), (">=", 3, 3, True), ("<", 2, 3, True), ("<=", 4, 3, False),
        ("contains", "hello world", "world", True), ("contains", [1, 2], 3, False),
        ("not_contains", "abc", "z", True), ("starts_with", "prefix-x", "prefix", True),
        ("ends_with", "file.json", ".json", True), ("ends_with", "file.json", ".txt", False),
        ("is_empty", "", None, True), ("is_empty", [1], None, False), ("is_empty", None, None, True),
        ("is_not_empty", {"a": 1}, None, True), ("regex", "order-1234", r"\d{4}$", True), ("regex", "x", r"^\d", False),
    ],
)  # fmt: skip
async def test_each_operator(op, actual, value, expected):
    result = await run_element("case", {"v": actual}, **case_of([{"field": "v", "operator": op, "value": value}]))
    assert result.ports == frozenset({"hit" if expected else "default"})


async def test_first_matching_case_wins_and_inputs_pass_through():
    cases = {
        "cases": [
            {"id": "small", "conditions": [{"field": "n", "operator": "<", "value": 10}]},
            {"id": "any_number", "conditions": [{"field": "n", "operator": ">=", "value": 0}]},
        ]
    }
    result = await run_element("case", {"n": 5, "other": "x"}, **cases)
    assert result.ports == frozenset({"small"})
    assert result.outputs == {"n": 5, "other": "x", "matched_case": "small"}


async def test_all_and_any_combinators_over_nested_paths():
    conditions = [
        {"field": "user.tier", "operator": "==", "value": "gold"},
        {"field": "orders[0].total", "operator": ">", "value": 100},
    ]
    inputs = {"user": {"tier": "gold"}, "orders": [{"total": 50}]}
    assert (await run_element("case", inputs, **case_of(conditions, "all"))).ports == {"default"}
    assert (await run_element("case", inputs, **case_of(conditions, "any"))).ports == {"hit"}


async def test_missing_field_counts_as_null():
    result = await run_element("case", {}, **case_of([{"field": "a.b", "operator": "is_empty"}]))
    assert result.ports == {"hit"}


async def test_incompatible_types_are_an_element_error_naming_case_and_field():
    with pytest.raises(ElementError) as raised:
        await run_element("case", {"v": "abc"}, **case_of([{"field": "v", "operator": ">", "value": 3}]))
    assert "case 'hit'" in raised.value.message and "'v'" in raised.value.message


async def test_comparing_a_missing_field_says_it_is_missing():
    with pytest.raises(ElementError, match=r"field 'order.total' \(missing: path 'order.total' has no 'total'\)"):
        await run_element("case", {"order": {}}, **case_of([{"field": "order.total", "operator": ">", "value": 3}]))


@pytest.mark.parametrize(
    "config",
    [
        {"cases": []},
        {"cases": [{"id": "a", "conditions": [{"field": "x", "operator": "~", "value": 1}]}]},
        {"cases": [{"id": "a", "conditions": [{"field": "x", "operator": "regex", "value": "("}]}]},
        {"cases": [{"id": "a", "conditions": [{"field": "x", "operator": "==", "value": 1}]}] * 2},
        {"cases": [{"id": "default", "conditions": [{"field": "x", "operator": "==", "value": 1}]}]},
        {"cases": [{"id": "a", "conditions": [{"field": "x[", "operator": "==", "value": 1}]}]},
    ],
)
def test_bad_case_config_is_rejected(config):
    with pytest.raises(ValidationError):
        make_element("case", **config)


def test_branch_ports_are_case_ids_and_default():
    element = make_element("case", **case_of([{"field": "v", "operator": "is_empty"}], case_id="empty"))
    assert element.output_ports() == frozenset({"empty", "default"})


async def test_flow_select_routes_by_input_config_or_default():
    config = {"branches": ["fast", "slow"]}
    assert (await run_element("flow_select", {"selection": "slow"}, **config)).ports == {"slow"}
    assert (await run_element("flow_select", {"selection": "other"}, **config)).ports == {"default"}
    assert (await run_element("flow_select", {}, **config, selection="fast")).ports == {"fast"}
    routed = await run_element("flow_select", {"mode": "fast", "x": 1}, **config, selection_input="mode")
    assert routed.ports == {"fast"} and routed.outputs["x"] == 1


async def test_a_catastrophic_regex_times_out_as_an_element_error():
    import time

    evil = [{"field": "v", "operator": "regex", "value": r"^(a|aa)+$"}]
    started = time.perf_counter()
    with pytest.raises(ElementError) as raised:
        await run_element("case", {"v": "a" * 40 + "!"}, **case_of(evil))
    assert time.perf_counter() - started < 10  # with `re` this search runs for hours
    assert raised.value.error_type == "regex_timeout" and "^(a|aa)+$" in raised.value.message
