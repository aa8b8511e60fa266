"""start, end, chat_input, context_history, data_block, selector, merger, random_generator."""

import uuid

import pytest
from pydantic import ValidationError

from elements.paths import PathMissing, parse_path, resolve
from engine.errors import ElementError
from tests.element_helpers import make_element, run_element


async def test_start_outputs_its_inputs():
    assert await run_element("start", {"a": 1}) == {"a": 1}


async def test_end_renames_positionally_as_in_the_seed():
    fields = {
        "input_schema": {"text_input": {"type": "string", "required": True}},
        "output_schema": {"text_output": {"type": "string", "required": True}},
    }
    assert await run_element("end", {"text_input": "hi"}, **fields) == {"text_output": "hi"}


async def test_end_keeps_shared_names_and_passes_everything_without_output_schema():
    fields = {"input_schema": {"a": {}, "b": {}}, "output_schema": {"a": {}, "renamed": {}}}
    assert await run_element("end", {"a": 1, "b": 2}, **fields) == {"a": 1, "renamed": 2}
    assert await run_element("end", {"x": 1}) == {"x": 1}
    assert await run_element("end", {"llm_output": "t"}, output_schema={"text_output": {}}) == {"text_output": "t"}


async def test_chat_input_reads_the_message_or_default():
    assert await run_element("chat_input", {"message": "hello"}) == {"message": "hello"}
    assert await run_element("chat_input", {"q": "hey"}, input_key="q") == {"message": "hey"}
    assert await run_element("chat_input", {}, default="fallback") == {"message": "fallback"}
    with pytest.raises(ElementError, match="no input 'message'"):
        await run_element("chat_input", {})
    with pytest.raises(ElementError, match="must be a string"):
        await run_element("chat_input", {"message": 5})


async def test_context_history_windows_and_renders_text():
    history = [{"role": "user", "content": f"m{i}"} for i in range(5)]
    out = await run_element("context_history", {"history": history}, max_messages=2)
    assert out["history"] == history[-2:]
    assert out["history_text"] == "user: m3\nuser: m4"
    assert (await run_element("context_history", {}))["history"] == []


async def test_context_history_names_the_bad_item():
    with pytest.raises(ElementError, match=r"history\[1\]"):
        await run_element("context_history", {"history": [{"role": "user", "content": "a"}, {"role": "robot"}]})


async def test_data_block_outputs_static_json():
    assert await run_element("data_block", {}, data={"a": 1, "b": [2]}) == {"a": 1, "b": [2]}
    assert await run_element("data_block", {}, data=[1, 2]) == {"data": [1, 2]}


def test_paths():
    assert parse_path('a.b[0]["c.d"][-1]') == ("a", "b", 0, "c.d", -1)
    assert resolve({"a": [{"b": 7}]}, "a[0].b") == 7
    with pytest.raises(PathMissing, match="has no 'x'"):
        resolve({"a": {}}, "a.x")
    with pytest.raises(ValueError):
        parse_path("a..b")


def test_long_paths_are_parsed_without_the_cache():
    long_path = ".".join(["k"] * 200)
    nested: dict = {"k": "leaf"}
    for _ in range(199):
        nested = {"k": nested}
    assert resolve(nested, long_path) == "leaf"
    assert parse_path(long_path) == ("k",) * 200


async def test_selector_picks_by_path_with_default():
    data = {"a": {"b": [{"c": "deep"}, {"c": "last"}]}}
    assert await run_element("selector", data, path="a.b[0].c") == {"value": "deep"}
    assert await run_element("selector", data, path="b[-1].c", input_key="a") == {"value": "last"}
    assert await run_element("selector", data, path="a.zzz", default=None) == {"value": None}
    with pytest.raises(ElementError, match="has no 'zzz'"):
        await run_element("selector", data, path="a.zzz")
    with pytest.raises(ValidationError):
        make_element("selector", path="a[")


@pytest.mark.parametrize(
    ("strategy", "inputs", "expected"),
    [
        ("object", {"a": {"x": 1}, "b": {"x": 2, "y": 3}}, {"x": 2, "y": 3}),
        ("object", {"a": {"x": 1}, "n": 5}, {"x": 1, "n": 5}),
        ("list", {"a": [1], "b": [2, 3], "c": 4}, [1, 2, 3, 4]),
        ("string", {"a": "x", "b": "y"}, "x-y"),
        ("first", {"a": None, "b": "second", "c": "third"}, "second"),
    ],
)
async def test_merger_strategies(strategy, inputs, expected):
    out = await run_element("merger", inputs, strategy=strategy, separator="-")
    assert out == {"merged": expected}


async def test_merger_follows_declared_input_order():
    out = await run_element("merger", {"a": "A", "z": "Z"}, strategy="first", input_schema={"z": {}, "a": {}})
    assert out == {"merged": "Z"}


async def test_random_generator_modes_and_seed():
    for _ in range(20):
        assert 1 <= (await run_element("random_generator", {}, mode="int", min=1, max=3))["value"] <= 3
    value = (await run_element("random_generator", {}, mode="float", min=0.5, max=0.6))["value"]
    assert 0.5 <= value <= 0.6
    assert (await run_element("random_generator", {}, mode="choice", choices=["x"]))["value"] == "x"
    uuid.UUID((await run_element("random_generator", {}, mode="uuid"))["value"])
    seeded = [(await run_element("random_generator", {}, mode="uuid", seed=42))["value"] for _ in range(2)]
    assert seeded[0] == seeded[1]
    ints = {
        (await run_element("random_generator", {}, mode="int", min=0, max=10**9, seed=7))["value"] for _ in range(3)
    }
    assert len(ints) == 1


async def test_random_generator_keeps_large_int_bounds_exact():
    bound = 2**60 + 1
    assert await run_element("random_generator", {}, mode="int", min=bound, max=bound) == {"value": bound}
    assert await run_element("random_generator", {}, mode="int", min=3.0, max=3.0) == {"value": 3}


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "int", "min": 5, "max": 1},
        {"mode": "choice"},
        {"mode": "int", "min": 0.5},
        {"mode": "dice"},
        {"mode": "float", "min": float("-inf")},
        {"mode": "float", "max": float("nan")},
    ],
)
def test_random_generator_bad_config(config):
    with pytest.raises(ValidationError):
        make_element("random_generator", **config)
