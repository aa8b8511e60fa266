"""llm_text and llm_structured at element level (no Ray): ElementContext + ServiceHub against
the fake Bedrock server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from elements.conversation import ContextHistoryElement
from elements.llm_structured import LlmStructuredElement, tool_input_schema
from elements.llm_text import LlmTextElement, placeholders, render_prompt
from engine.element import ElementContext, Placement
from engine.errors import ElementError, InputValidationError, OutputValidationError, TransientError
from engine.models import ElementDefinition
from services.bedrock import BedrockService
from services.hub import ServiceHub
from tests.engine_doubles import flow, run_local
from tests.fixtures.bedrock import FAKE_MODEL_ID, fake_bedrock_settings


def make(cls, **fields: Any):
    definition = ElementDefinition.model_validate({"type": cls.type_name, "element_id": "llm-1", **fields})
    return cls.from_definition(definition)


class Chunks:
    """The emit callback of an ElementContext, with arrival times."""

    def __init__(self) -> None:
        self.items: list[tuple[float, int, str]] = []

    def __call__(self, chunk: str, index: int) -> None:
        self.items.append((time.monotonic(), index, chunk))

    @property
    def texts(self) -> list[str]:
        return [text for _, _, text in self.items]


def context(hub: ServiceHub, chunks: Chunks | None = None) -> ElementContext:
    return ElementContext(
        flow_id="flow-1",
        element_id="llm-1",
        settings=hub.settings,
        services=hub,
        emit_chunk_event=chunks or (lambda chunk, index: None),
    )


SEED_LLM = {
    "input_schema": {"prompt": {"type": "string", "required": True}},
    "output_schema": {"llm_output": {"type": "string", "required": True}},
    "temperature": 0.7,
    "max_tokens": 1000,
    "wrapper_prompt": "Generate a response to: {prompt}",
}

# -- llm_text --------------------------------------------------------------------------------


def test_llm_text_declaration():
    element = make(LlmTextElement, **SEED_LLM)
    assert element.placement is Placement.IO and element.streams
    assert element.output_ports() == {"llm_output", "usage", "stop_reason"}


async def test_llm_text_streams_chunks_before_it_returns(bedrock_hub, bedrock_server):
    pieces = ["I'm ", "doing ", "well, ", "thank ", "you ", "for ", "asking!"]
    bedrock_server.script_text(pieces, delay=0.05)
    chunks = Chunks()
    outputs = await make(LlmTextElement, **SEED_LLM).execute(
        {"prompt": "Hello, how are you today?"}, context(bedrock_hub, chunks)
    )
    returned_at = time.monotonic()

    assert len(chunks.items) >= 5
    assert "".join(chunks.texts) == outputs["llm_output"] == "".join(pieces)
    assert [index for _, index, _ in chunks.items] == list(range(len(pieces)))
    first_at, last_at = chunks.items[0][0], chunks.items[-1][0]
    assert last_at - first_at >= 0.2, "chunks were batched instead of relayed as they arrived"
    assert returned_at - first_at >= 0.2
    assert outputs["stop_reason"] == "end_turn"
    assert outputs["usage"]["output_tokens"] == len(pieces)

    [request] = bedrock_server.requests
    assert request.model_id == FAKE_MODEL_ID
    assert request.body["messages"] == [
        {"role": "user", "content": [{"text": "Generate a response to: Hello, how are you today?"}]}
    ]
    assert request.body["inferenceConfig"] == {"temperature": 0.7, "maxTokens": 1000}
    assert "system" not in request.body


async def test_llm_text_config_reaches_bedrock(bedrock_hub, bedrock_server):
    element = make(
        LlmTextElement,
        config={
            "wrapper_prompt": "Summarise {doc} in {{JSON}} for {user}",
            "system_prompt": "Be terse.",
            "model_id": "meta.llama3-8b-instruct-v1:0",
            "top_p": 0.5,
            "stop_sequences": ["END"],
        },
    )
    await element.execute({"doc": {"k": [1, 2]}, "user": "Ann", "unused": 1}, context(bedrock_hub))
    [request] = bedrock_server.requests
    assert request.model_id == "meta.llama3-8b-instruct-v1:0"
    assert request.body["system"] == [{"text": "Be terse."}]
    assert request.body["messages"][0]["content"] == [{"text": 'Summarise {"k": [1, 2]} in {JSON} for Ann'}]
    assert request.body["inferenceConfig"] == {"topP": 0.5, "stopSequences": ["END"]}


async def test_llm_text_history_becomes_messages(bedrock_hub, bedrock_server):
    element = make(LlmTextElement, wrapper_prompt="{message}", system_prompt="Base.", history_input="context")
    history = [
        {"role": "system", "content": "Extra rule."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]
    await element.execute({"message": "What's up?", "context": history}, context(bedrock_hub))
    body = bedrock_server.requests[0].body
    assert body["system"] == [{"text": "Base."}, {"text": "Extra rule."}]
    assert body["messages"] == [
        {"role": "user", "content": [{"text": "Hi"}]},
        {"role": "assistant", "content": [{"text": "Hello!"}]},
        {"role": "user", "content": [{"text": "What's up?"}]},
    ]


async def test_context_history_and_llm_text_read_the_same_turns(bedrock_hub, bedrock_server):
    """One conversation model: context_history accepts the role aliases llm_text accepts and
    outputs them canonical, so its output means to llm_text what its input would have."""
    history = [
        {"role": "Human", "content": "Hi", "ts": 1},
        {"role": "ai", "content": "Hello!"},
        {"role": "SYSTEM", "content": "Extra rule."},
    ]
    context_history = ContextHistoryElement.from_definition(
        ElementDefinition.model_validate({"type": "context_history", "element_id": "ctx"})
    )
    out = await context_history.execute({"history": history}, context(bedrock_hub))
    assert out["history"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "system", "content": "Extra rule."},
    ]
    assert out["history_text"] == "user: Hi\nassistant: Hello!\nsystem: Extra rule."
    element = make(LlmTextElement, wrapper_prompt="{message}")
    for given in (history, out["history"]):
        await element.execute({"message": "What's up?", "history": given}, context(bedrock_hub))
    first, second = (recorded.body for recorded in bedrock_server.requests)
    assert first == second
    with pytest.raises(InputValidationError, match=r"history\[0\]\.content' must be a string"):
        await context_history.execute({"history": [{"role": "user", "content": {"k": 1}}]}, context(bedrock_hub))


async def test_missing_placeholder_names_it(bedrock_hub, bedrock_server):
    element = make(LlmTextElement, wrapper_prompt="Answer {question} for {persona}")
    with pytest.raises(ElementError) as info:
        await element.execute({"question": "why?"}, context(bedrock_hub))
    assert info.value.error_type == "missing_placeholder"
    assert "{persona}" in info.value.message and "question" in info.value.message
    assert bedrock_server.requests == []


def test_prompt_template_rules():
    assert placeholders("a {x} {{literal}} {y-z}") == ["x", "y-z"]
    assert render_prompt("{a}/{b}/{{c}}", {"a": "1", "b": [2]}) == "1/[2]/{c}"
    for bad in ("{x.__class__}", "{x[0]}", "{}", "{x!r}", "{x:>10}", "{unclosed", "stray }"):
        with pytest.raises(ValueError):
            placeholders(bad)


@pytest.mark.parametrize("template", ["{prompt.__globals__}", "{", 'Give JSON like {"a": 1}'])
def test_malformed_template_is_a_validation_problem(template, bedrock_settings):
    definition = ElementDefinition(type="llm_text", element_id="llm-1", wrapper_prompt=template)
    problems = LlmTextElement.from_definition(definition).check(bedrock_settings)
    assert [path for path, _ in problems] == ["wrapper_prompt"]
    assert "{{" in problems[0][1]


async def test_llm_text_error_mapping(bedrock_hub, bedrock_server):
    bedrock_server.fail_next("access_denied")
    with pytest.raises(ElementError) as info:
        await make(LlmTextElement, **SEED_LLM).execute({"prompt": "hi"}, context(bedrock_hub))
    assert info.value.error_type == "access_denied"


async def test_llm_text_throttled_then_success(bedrock_hub, bedrock_server):
    bedrock_server.fail_next("throttle", 1)
    outputs = await make(LlmTextElement, **SEED_LLM).execute({"prompt": "hi"}, context(bedrock_hub))
    assert outputs["llm_output"]
    assert len(bedrock_server.requests) == 2


async def test_llm_text_throttled_beyond_retries(bedrock_settings, bedrock_server):
    hub = ServiceHub(bedrock_settings, bedrock=BedrockService(bedrock_settings, max_attempts=2))
    bedrock_server.fail_next("throttle", 2)
    try:
        with pytest.raises(TransientError) as info:
            await make(LlmTextElement, **SEED_LLM).execute({"prompt": "hi"}, context(hub))
    finally:
        await hub.aclose()
    assert info.value.error_type == "throttled" and info.value.transient


async def test_cancelling_the_element_hangs_up_the_stream(bedrock_hub, bedrock_server):
    bedrock_server.script_text([f"tok{i} " for i in range(100)], delay=0.05)
    chunks = Chunks()
    task = asyncio.create_task(make(LlmTextElement, **SEED_LLM).execute({"prompt": "hi"}, context(bedrock_hub, chunks)))
    while len(chunks.items) < 3:
        await asyncio.sleep(0.01)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stream = bedrock_server.wait_for_stream()
    assert bedrock_server.wait_for_abort(stream, 5.0)
    assert stream.aborted_at - cancelled_at < 3.0  # the rest of the stream would take 5 s
    count = len(chunks.items)
    await asyncio.sleep(0.2)
    assert len(chunks.items) == count, "chunks kept coming after the cancel"


async def warm(hub: ServiceHub) -> None:
    """One quick call, so the boto3 client exists before a test that times a short deadline."""
    await make(LlmTextElement, **SEED_LLM).execute({"prompt": "warm-up"}, context(hub))


async def test_timeout_around_the_element_hangs_up_the_stream(bedrock_hub, bedrock_server):
    await warm(bedrock_hub)
    bedrock_server.script_text(["slow "] * 100, delay=0.05)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await make(LlmTextElement, **SEED_LLM).execute({"prompt": "hi"}, context(bedrock_hub))
    stream = bedrock_server.wait_for_stream(index=1)
    assert bedrock_server.wait_for_abort(stream, 5.0)


async def test_two_elements_stream_concurrently(bedrock_hub, bedrock_server):
    bedrock_server.script_text([f"w{i} " for i in range(8)], delay=0.05)
    a, b = Chunks(), Chunks()
    await asyncio.gather(
        make(LlmTextElement, **SEED_LLM).execute({"prompt": "a"}, context(bedrock_hub, a)),
        make(LlmTextElement, **SEED_LLM).execute({"prompt": "b"}, context(bedrock_hub, b)),
    )
    # Each stream began before the other ended: concurrent, whatever the machine's load.
    assert a.items[0][0] < b.items[-1][0] and b.items[0][0] < a.items[-1][0]


# -- llm_structured --------------------------------------------------------------------------

STRUCTURED = {
    "wrapper_prompt": "Extract the facts from: {text}",
    "output_schema": {
        "title": {"type": "string", "required": True, "description": "a short title"},
        "score": {"type": "integer", "required": True},
        "tags": {"type": "array", "items": {"type": "string"}},
        "mood": {"type": "string", "enum": ["good", "bad"]},
    },
}


def test_tool_schema_from_output_schema():
    definition = ElementDefinition.model_validate({"type": "llm_structured", "element_id": "s", **STRUCTURED})
    assert tool_input_schema(definition.output_schema) == {
        "type": "object",
        "properties": {
            "title": {"type": "string", "description": "a short title"},
            "score": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "mood": {"type": "string", "enum": ["good", "bad"]},
        },
        "required": ["title", "score"],
    }


def test_llm_structured_needs_an_output_schema(bedrock_settings):
    definition = ElementDefinition(type="llm_structured", element_id="s", wrapper_prompt="{x}")
    problems = LlmStructuredElement.from_definition(definition).check(bedrock_settings)
    assert [path for path, _ in problems] == ["output_schema"]


async def test_llm_structured_happy_path(bedrock_hub, bedrock_server):
    bedrock_server.queue_tool_inputs({"title": "Launch", "score": 7, "tags": ["a"], "extra": "dropped"})
    element = make(LlmStructuredElement, **STRUCTURED, system_prompt="Only facts.", temperature=0)
    outputs = await element.execute({"text": "We launched."}, context(bedrock_hub))
    assert outputs == {"title": "Launch", "score": 7, "tags": ["a"], "mood": None}

    [request] = bedrock_server.requests
    assert request.operation == "converse"
    tool_config = request.body["toolConfig"]
    assert tool_config["toolChoice"] == {"tool": {"name": "structured_output"}}
    spec = tool_config["tools"][0]["toolSpec"]
    assert spec["name"] == "structured_output"
    assert spec["inputSchema"]["json"]["required"] == ["title", "score"]
    assert request.body["system"] == [{"text": "Only facts."}]
    assert request.body["inferenceConfig"] == {"temperature": 0}
    assert request.body["messages"] == [{"role": "user", "content": [{"text": "Extract the facts from: We launched."}]}]


async def test_llm_structured_repairs_once(bedrock_hub, bedrock_server):
    bedrock_server.queue_tool_inputs({"title": 5}, {"title": "Fixed", "score": 1})
    outputs = await make(LlmStructuredElement, **STRUCTURED).execute({"text": "x"}, context(bedrock_hub))
    assert outputs["title"] == "Fixed" and outputs["score"] == 1

    first, second = bedrock_server.requests
    messages = second.body["messages"]
    assert messages[0] == first.body["messages"][0]
    assert messages[1]["role"] == "assistant"
    tool_use = messages[1]["content"][0]["toolUse"]
    assert tool_use["input"] == {"title": 5}
    result = messages[2]["content"][0]["toolResult"]
    assert messages[2]["role"] == "user"
    assert result["toolUseId"] == tool_use["toolUseId"] and result["status"] == "error"
    feedback = result["content"][0]["text"]
    assert "'title' must be string" in feedback and "'score' is required" in feedback
    assert second.body["toolConfig"]["toolChoice"] == {"tool": {"name": "structured_output"}}


async def test_llm_structured_invalid_after_repair(bedrock_hub, bedrock_server):
    bedrock_server.queue_tool_inputs({"title": "ok", "score": "high"}, {"title": "ok", "score": 2.5})
    with pytest.raises(OutputValidationError) as info:
        await make(LlmStructuredElement, **STRUCTURED).execute({"text": "x"}, context(bedrock_hub))
    assert info.value.error_type == "output_invalid"
    assert "'score' must be integer" in info.value.message
    assert len(bedrock_server.requests) == 2


async def test_llm_structured_error_mapping(bedrock_hub, bedrock_server):
    bedrock_server.fail_next("validation")
    with pytest.raises(ElementError) as info:
        await make(LlmStructuredElement, **STRUCTURED).execute({"text": "x"}, context(bedrock_hub))
    assert info.value.error_type == "validation"


# -- through the scheduler (engine.local, no Ray) --------------------------------------------


def _llm_flow(llm_ids: list[str], *, timeout: float | None = None) -> dict:
    llm = {"type": "llm_text", **SEED_LLM, **({"timeout": timeout} if timeout else {})}
    elements = {"s": {"type": "test_echo"}, "e": {"type": "test_echo"}} | {i: dict(llm) for i in llm_ids}
    connections = [(("s", i)) for i in llm_ids] + [(i, "e", "llm_output", f"text_{i}") for i in llm_ids]
    return flow(elements, connections, inputs={"prompt": "Hello, how are you today?"})


def _by_element(events, element_id: str) -> list:
    return [event for event in events if event.element_id == element_id]


async def test_flow_streams_chunks_between_started_and_completed(bedrock_hub, bedrock_server):
    bedrock_server.script_text(["Fine, ", "thanks ", "for ", "asking, ", "and ", "you?"], delay=0.02)
    snapshot, events = await run_local(_llm_flow(["llm-1"]), bedrock_hub.settings, bedrock_hub)
    assert snapshot["status"] == "completed"
    types = [event.type for event in _by_element(events, "llm-1")]
    assert types == ["element_started"] + ["llm_chunk"] * 6 + ["element_completed"]
    chunks = [event.data for event in _by_element(events, "llm-1") if event.type == "llm_chunk"]
    completed = _by_element(events, "llm-1")[-1]
    assert (
        "".join(c["chunk"] for c in chunks)
        == completed.data["outputs"]["llm_output"]
        == "Fine, thanks for asking, and you?"
    )
    assert [c["index"] for c in chunks] == list(range(6))


async def test_flow_parallel_llm_branches_interleave(bedrock_hub, bedrock_server):
    bedrock_server.script_text([f"w{i} " for i in range(8)], delay=0.03)
    snapshot, events = await run_local(_llm_flow(["llm-a", "llm-b"]), bedrock_hub.settings, bedrock_hub)
    assert snapshot["status"] == "completed"
    chunk_owners = [event.element_id for event in events if event.type == "llm_chunk"]
    assert chunk_owners.index("llm-b") < len(chunk_owners) - 1 - chunk_owners[::-1].index("llm-a")
    for element_id in ("llm-a", "llm-b"):
        indexes = [e.data["index"] for e in _by_element(events, element_id) if e.type == "llm_chunk"]
        assert indexes == list(range(8))


async def test_flow_element_timeout_hangs_up_the_stream(bedrock_hub, bedrock_server):
    await warm(bedrock_hub)
    bedrock_server.script_text(["slow "] * 100, delay=0.05)
    snapshot, events = await run_local(_llm_flow(["llm-1"], timeout=0.3), bedrock_hub.settings, bedrock_hub)
    assert snapshot["status"] == "failed"
    [error] = [event for event in events if event.type == "element_error"]
    assert error.data["error_type"] == "timeout"
    stream = bedrock_server.wait_for_stream(index=1)
    assert bedrock_server.wait_for_abort(stream, 5.0)


async def test_flow_missing_credentials_fail_only_the_element(bedrock_server, no_ambient_aws_credentials):
    settings = fake_bedrock_settings(bedrock_server.url, aws_access_key_id=None, aws_secret_access_key=None)
    hub = ServiceHub(settings)
    try:
        snapshot, events = await run_local(_llm_flow(["llm-1"]), settings, hub)
    finally:
        await hub.aclose()
    [error] = [event for event in events if event.type == "element_error"]
    assert error.element_id == "llm-1" and error.data["error_type"] == "missing_credentials"
    assert snapshot["status"] == "failed"
