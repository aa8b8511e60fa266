"""engine.limits and the event redactor on synthetic values, up to 100,000 levels deep."""

import json
import random

import pytest

from engine.events import EventEmitter, Redactor
from engine.limits import MAX_EVENT_DEPTH, MAX_VALUE_DEPTH, TOO_DEEP, depth_exceeds, json_size, measure

DEEP = 100_000
SECRET = "canary-secret-4567"


def nested_lists(levels, leaf=None):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


def nested_dicts(levels, leaf=None):
    value = leaf
    for _ in range(levels):
        value = {"k": value}
    return value


def compact(value):
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


SAMPLES = [
    None, True, False, 0, -17, 10**40, 3.25, 1e300, -0.0, float("nan"), float("inf"), float("-inf"),
    "", "plain", 'quote " backslash \\ newline \n tab \t', "\x01\x1f control", "é€𝄞 non-ascii",
    [], {}, (), [1, [2, [3, []]]], (1, "two", None), {"a": {"b": [1, 2, {"c": "é"}]}},
    {1: "int key", 2.5: "float key", False: "bool key", None: "null key", "é": "str key"},
]  # fmt: skip


@pytest.mark.parametrize("value", SAMPLES, ids=repr)
def test_size_is_the_compact_utf8_json_size(value):
    assert measure(value).size == compact(value) == json_size(value)


def test_size_matches_json_on_random_values():
    rng = random.Random(7)
    leaves = ["a", 'é€\x01"\\\n', "𝄞", 1, -5, 3.25, 1e-300, True, False, None, 10**50, ""]
    keys = ["k", "ü", 1, 2.5, True, None, 'x"y']

    def build(level):
        roll = rng.random()
        if level > 5 or roll < 0.4:
            return rng.choice(leaves)
        if roll < 0.7:
            return [build(level + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(keys): build(level + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(500):
        value = build(0)
        assert measure(value).size == compact(value)


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ([], 1), ({}, 1), ({"a": [1]}, 2), ([[], [[]], {"a": {"b": {}}}], 4)],
)
def test_depth_counts_containers(value, depth):
    assert measure(value).depth == depth


@pytest.mark.parametrize("build", [nested_lists, nested_dicts])
def test_100000_deep_values_are_measured_without_recursion(build):
    value = build(DEEP, "leaf")
    result = measure(value)
    assert result.depth == DEEP
    per_level = 2 if build is nested_lists else len('{"k":}')
    assert result.size == DEEP * per_level + len('"leaf"')
    assert depth_exceeds(value, MAX_VALUE_DEPTH)


@pytest.mark.parametrize("build", [nested_lists, nested_dicts])
def test_max_depth_stops_the_walk_early(build):
    assert measure(build(DEEP), max_depth=MAX_VALUE_DEPTH) == type(measure(1))(MAX_VALUE_DEPTH + 1, None)
    at_limit = build(MAX_VALUE_DEPTH)
    assert measure(at_limit, max_depth=MAX_VALUE_DEPTH).depth == MAX_VALUE_DEPTH
    assert not depth_exceeds(at_limit, MAX_VALUE_DEPTH)
    assert depth_exceeds(build(MAX_VALUE_DEPTH + 1), MAX_VALUE_DEPTH)


def test_wide_values_are_not_deep():
    wide = {str(i): [i, {"x": i}] for i in range(10_000)}
    assert measure(wide) == type(measure(1))(3, compact(wide))


def test_circular_values_are_refused_or_too_deep():
    loop = []
    loop.append(loop)
    with pytest.raises(ValueError):
        measure(loop)
    assert measure(loop, max_depth=10).size is None
    assert depth_exceeds({"a": loop}, 10)
    shared = [1]
    assert measure([shared, shared]).depth == 2  # the same list twice is not a cycle


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", {"a": object()}, {(1, 2): "tuple key"}])
def test_what_json_cannot_carry_is_a_type_error(value):
    with pytest.raises(TypeError):
        measure(value)


def test_a_lone_surrogate_is_counted_as_escaped():
    assert measure("\ud800").size == len(json.dumps("\ud800"))


# -- the event redactor ---------------------------------------------------------------------------


@pytest.mark.parametrize("build", [nested_lists, nested_dicts])
def test_redactor_on_a_100000_deep_value_replaces_what_is_too_deep(build):
    redactor = Redactor([SECRET])
    scrubbed = redactor.scrub({"data": build(DEEP, SECRET)})
    assert measure(scrubbed).depth == MAX_EVENT_DEPTH
    assert TOO_DEEP in json.dumps(scrubbed) and SECRET not in json.dumps(scrubbed)


def test_redactor_keeps_values_within_the_depth_and_masks_them():
    redactor = Redactor([SECRET])
    value = {"inputs": nested_dicts(MAX_VALUE_DEPTH, f"x {SECRET} y")}
    scrubbed = redactor.scrub(value)
    assert scrubbed == {"inputs": nested_dicts(MAX_VALUE_DEPTH, "x *** y")}
    assert redactor.scrub({SECRET: (1, [SECRET]), "n": 2.5}) == {"***": [1, ["***"]], "n": 2.5}


def test_redactor_without_secrets_returns_the_value_itself():
    value = nested_lists(DEEP)
    assert Redactor().scrub(value) is value


def test_an_event_with_a_100000_deep_value_is_emitted():
    events = []
    emitter = EventEmitter("f", events.append, Redactor([SECRET]))
    emitter.emit("element_completed", {"outputs": {"v": nested_lists(DEEP, SECRET)}}, "e")
    (event,) = events
    assert measure(event.data).depth == MAX_EVENT_DEPTH
    assert SECRET not in event.model_dump_json()
