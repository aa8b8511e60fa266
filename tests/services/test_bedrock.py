"""services/bedrock/ against the fake Bedrock server: streaming relay, cancellation, error
mapping, credentials, concurrency and secret hygiene. botocore parses the fake's frames as it
parses AWS; nothing in boto3 is patched."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from engine.conversation import build_conversation, parse_turns
from engine.errors import ConfigurationError, ElementError, InputValidationError, TransientError
from engine.llm import ConverseRequest, InferenceParams, StreamEnd, ToolSpec
from engine.settings import Settings
from services.bedrock import BedrockService
from services.hub import ServiceHub
from tests.fakes.bedrock_server import FakeBedrock
from tests.fixtures.bedrock import FAKE_MODEL_ID, fake_bedrock_settings


def _request(prompt: str = "Say hello", **kwargs) -> ConverseRequest:
    system, messages = build_conversation(prompt, system_prompt=kwargs.pop("system_prompt", None))
    return ConverseRequest(model_id=FAKE_MODEL_ID, messages=messages, system=system, **kwargs)


@pytest.fixture
async def service(bedrock_settings):
    service = BedrockService(bedrock_settings, max_attempts=2)
    yield service
    service.close()


async def _collect(service: BedrockService, request: ConverseRequest) -> tuple[list[tuple[float, str]], StreamEnd]:
    deltas: list[tuple[float, str]] = []
    end = await service.generate_text(request, lambda text: deltas.append((time.monotonic(), text)))
    return deltas, end


# -- conversation building -------------------------------------------------------------------


def test_build_conversation_merges_roles_and_collects_system():
    history = [
        {"role": "assistant", "content": "dropped: Converse starts with the user"},
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "Are you there?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "ai", "content": ""},
        {"role": "human", "content": {"structured": True}},
    ]
    system, messages = build_conversation("Now answer", history, system_prompt="You are a bot.")
    assert system == ["You are a bot.", "Be brief."]
    assert messages == [
        {"role": "user", "content": [{"text": "Hi"}, {"text": "Are you there?"}]},
        {"role": "assistant", "content": [{"text": "Yes."}]},
        {"role": "user", "content": [{"text": '{"structured": true}'}, {"text": "Now answer"}]},
    ]


@pytest.mark.parametrize(
    ("history", "fragment"),
    [
        ("just text", "must be a list"),
        ([{"role": "user"}], "history[0]"),
        ([{"role": "robot", "content": "x"}], "history[0].role"),
    ],
)
def test_build_conversation_rejects_bad_history(history, fragment):
    with pytest.raises(InputValidationError) as info:
        build_conversation("p", history)
    assert fragment in info.value.message


def test_parse_turns_accepts_role_aliases_in_any_case():
    turns = parse_turns([{"role": r, "content": "x"} for r in ("Human", "BOT", "model", "ai", "system")], "h")
    assert [turn.role for turn in turns] == ["user", "assistant", "assistant", "assistant", "system"]
    with pytest.raises(InputValidationError, match=r"'h\[0\]\.content' must be a string, got dict"):
        parse_turns([{"role": "user", "content": {"a": 1}}], "h")
    [turn] = parse_turns([{"role": "user", "content": {"a": 1}}], "h", structured_content=True)
    assert turn.content == '{"a": 1}'


def test_request_kwargs_shape():
    request = _request(system_prompt="sys", inference=InferenceParams(0.2, 50, 0.9, ("STOP",)))
    kwargs = request.to_kwargs()
    assert kwargs["system"] == [{"text": "sys"}]
    assert kwargs["inferenceConfig"] == {"temperature": 0.2, "maxTokens": 50, "topP": 0.9, "stopSequences": ["STOP"]}
    assert "inferenceConfig" not in _request().to_kwargs()


# -- streaming -------------------------------------------------------------------------------


async def test_stream_relays_each_delta_as_it_arrives(service, bedrock_server):
    chunks = ["One ", "two ", "three ", "four ", "five ", "six."]
    bedrock_server.script_text(chunks, delay=0.05)
    t0 = time.monotonic()
    deltas, end = await _collect(service, _request(system_prompt="Be kind", inference=InferenceParams(max_tokens=64)))
    done = time.monotonic()
    assert [text for _, text in deltas] == chunks
    assert end.text == "".join(chunks)
    assert end.stop_reason == "end_turn"
    assert end.usage == {"input_tokens": 11, "output_tokens": 6, "total_tokens": 17}
    # paced frames arrive one by one, not batched at the end
    arrival = [at - t0 for at, _ in deltas]
    assert arrival[-1] - arrival[0] >= 0.2
    assert done - deltas[0][0] >= 0.15
    [recorded] = bedrock_server.requests
    assert recorded.operation == "converse-stream" and recorded.model_id == FAKE_MODEL_ID
    assert recorded.body["system"] == [{"text": "Be kind"}]
    assert recorded.body["inferenceConfig"] == {"maxTokens": 64}
    assert recorded.body["messages"] == [{"role": "user", "content": [{"text": "Say hello"}]}]
    assert recorded.headers["Authorization"].startswith("AWS4-HMAC-SHA256")


async def _cancel_after_first_chunk(service: BedrockService, server: FakeBedrock) -> float:
    first = asyncio.Event()
    task = asyncio.create_task(service.generate_text(_request(), lambda _text: first.set()))
    await asyncio.wait_for(first.wait(), 5)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [stream] = server.streams
    assert server.wait_for_abort(stream, 2.0), "the fake server never saw the client hang up"
    return stream.aborted_at - cancelled_at


@pytest.mark.parametrize(("delay", "stall"), [(0.05, 0.0), (0.0, 5.0)], ids=["paced", "stalled"])
async def test_cancel_closes_the_stream_within_one_second(service, bedrock_server, delay, stall):
    """Also while the reading thread is blocked on a silent socket (a model thinking)."""
    bedrock_server.script_text([f"t{i} " for i in range(40)], delay=delay, stall_after=1, stall=stall)
    assert await _cancel_after_first_chunk(service, bedrock_server) < 1.0
    [stream] = bedrock_server.streams
    assert not stream.completed


async def test_service_keeps_working_after_a_cancel(service, bedrock_server):
    bedrock_server.script_text(["x"] * 20, delay=0.05)
    await _cancel_after_first_chunk(service, bedrock_server)
    bedrock_server.script_text(["fine"])
    _, end = await _collect(service, _request())
    assert end.text == "fine"


async def test_two_streams_run_concurrently(service, bedrock_server):
    bedrock_server.script_text([f"w{i} " for i in range(10)], delay=0.05)
    log: list[str] = []
    await service.generate_text(_request(), log.append)  # warm the client
    log.clear()
    tagged: list[str] = []
    ends = await asyncio.gather(
        service.generate_text(_request("A"), lambda t: tagged.append("A")),
        service.generate_text(_request("B"), lambda t: tagged.append("B")),
    )
    assert [end.text for end in ends] == ["".join(f"w{i} " for i in range(10))] * 2
    first_b = tagged.index("B")
    assert "A" in tagged[first_b:], f"streams did not interleave: {tagged}"


# -- errors ----------------------------------------------------------------------------------


async def test_throttled_once_then_botocore_retries(service, bedrock_server):
    bedrock_server.fail_next("throttle", 1)
    _, end = await _collect(service, _request())
    assert end.text
    assert len(bedrock_server.requests) == 2


@pytest.mark.parametrize("operation", ["stream", "tool"])
async def test_throttled_beyond_retries_is_transient(service, bedrock_server, operation):
    bedrock_server.fail_next("throttle", 2)  # max_attempts=2: both attempts throttled
    with pytest.raises(TransientError) as info:
        await _call(service, operation)
    assert info.value.error_type == "throttled" and info.value.transient
    assert len(bedrock_server.requests) == 2


async def _call(service: BedrockService, operation: str):
    if operation == "stream":
        return await _collect(service, _request())
    tool = ToolSpec("answer", "Answer", {"type": "object", "properties": {}})
    return await service.converse_tool(_request(), tool)


@pytest.mark.parametrize(
    ("failure", "error_type", "cls"),
    [
        ("access_denied", "access_denied", ElementError),
        ("validation", "validation", ElementError),
        ("model_error", "model_error", ElementError),
    ],
)
@pytest.mark.parametrize("operation", ["stream", "tool"])
async def test_client_errors_map_to_element_errors(service, bedrock_server, failure, error_type, cls, operation):
    bedrock_server.fail_next(failure)
    with pytest.raises(cls) as info:
        await _call(service, operation)
    assert info.value.error_type == error_type
    assert not info.value.transient
    assert FAKE_MODEL_ID in info.value.message


async def test_unavailable_after_retries_is_transient(service, bedrock_server):
    bedrock_server.fail_next("unavailable", 2)
    with pytest.raises(TransientError) as info:
        await _call(service, "tool")
    assert info.value.error_type == "service_unavailable"


async def test_error_frame_mid_stream_is_a_model_error(service, bedrock_server):
    bedrock_server.script_text(["a", "b", "c"], error_after=2)
    seen: list[str] = []
    with pytest.raises(ElementError) as info:
        await service.generate_text(_request(), seen.append)
    assert seen == ["a", "b"]
    assert info.value.error_type == "model_error"
    assert "modelStreamErrorException" in info.value.message


async def test_max_attempts_and_concurrency_come_from_settings(bedrock_server, monkeypatch):
    monkeypatch.setenv("BEDROCK_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("BEDROCK_MAX_CONCURRENCY", "8")
    from_env = Settings(_env_file=None)
    assert (from_env.bedrock_max_attempts, from_env.bedrock_max_concurrency) == (3, 8)
    for bad in ({"bedrock_max_attempts": 0}, {"bedrock_max_concurrency": 0}, {"bedrock_max_attempts": 1000}):
        with pytest.raises(ValueError):
            fake_bedrock_settings(bedrock_server.url, **bad)
    service = BedrockService(fake_bedrock_settings(bedrock_server.url, bedrock_max_attempts=2))
    assert (service.max_attempts, service.max_workers) == (2, 8)
    bedrock_server.fail_next("throttle", 2)
    try:
        with pytest.raises(TransientError):
            await _call(service, "tool")
    finally:
        service.close()
    assert len(bedrock_server.requests) == 2


async def test_unreachable_endpoint_is_a_transient_network_error(bedrock_server):
    settings = fake_bedrock_settings("http://127.0.0.1:9")
    service = BedrockService(settings, max_attempts=1)
    try:
        with pytest.raises(TransientError) as info:
            await _call(service, "stream")
    finally:
        service.close()
    assert info.value.error_type == "network"


# -- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "named"),
    [
        ({"aws_access_key_id": None, "aws_secret_access_key": None}, "AWS_ACCESS_KEY_ID"),
        ({"aws_secret_access_key": None}, "AWS_SECRET_ACCESS_KEY"),
    ],
)
@pytest.mark.parametrize("operation", ["stream", "tool"])
async def test_missing_credentials_fail_the_call_not_the_hub(
    bedrock_server, no_ambient_aws_credentials, keys, named, operation
):
    hub = ServiceHub(fake_bedrock_settings(bedrock_server.url, **keys))
    service = hub.bedrock  # building the service never needs credentials
    try:
        with pytest.raises(ConfigurationError) as info:
            await _call(service, operation)
    finally:
        await hub.aclose()
    assert info.value.error_type == "missing_credentials"
    assert named in info.value.message
    assert bedrock_server.requests == []


async def test_credentials_from_the_environment_are_used(bedrock_server, no_ambient_aws_credentials, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-environment")
    settings = fake_bedrock_settings(bedrock_server.url, aws_access_key_id=None, aws_secret_access_key=None)
    service = BedrockService(settings)
    try:
        _, end = await _collect(service, _request())
    finally:
        service.close()
    assert end.text
    assert "AKIAFROMENVIRONMENT1" in bedrock_server.requests[0].headers["Authorization"]


# -- secrets ---------------------------------------------------------------------------------

CANARY_KEY_ID = "AKIACANARY0000000001"
CANARY_SECRET = "canary-secret-7f3a9c2e1b5d4f6a8e0c"
CANARY_TOKEN = "canary-session-token-4b1d8e2f"


async def test_no_secret_in_errors_or_logs(bedrock_server, caplog):
    caplog.set_level(logging.DEBUG)
    settings = fake_bedrock_settings(
        bedrock_server.url,
        aws_access_key_id=CANARY_KEY_ID,
        aws_secret_access_key=CANARY_SECRET,
        aws_session_token=CANARY_TOKEN,
    )
    service = BedrockService(settings, max_attempts=1)
    texts: list[str] = []
    try:
        await _collect(service, _request())
        for failure in ("access_denied", "validation", "throttle", "model_error"):
            bedrock_server.fail_next(failure)
            with pytest.raises(ElementError) as info:
                await _call(service, "stream")
            texts += [str(info.value), repr(info.value), str(info.value.__cause__)]
        bedrock_server.script_text(["a"], error_after=0)
        with pytest.raises(ElementError) as info:
            await _call(service, "stream")
        texts.append(str(info.value))
    finally:
        service.close()
    canaries = (CANARY_KEY_ID, CANARY_SECRET, CANARY_TOKEN)
    assert not any(canary in text for canary in canaries for text in texts)
    # botocore's own DEBUG lines show request headers (key id, session token; never the secret
    # key); engine.logging_setup masks them on the root handlers. Nothing at INFO or above, and
    # nothing this project logs, shows any of them.
    visible = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.INFO or not r.name.startswith(("botocore", "urllib3"))
    ]
    assert visible, "expected some log records"
    assert not any(canary in text for canary in canaries for text in visible)
    assert not any(CANARY_SECRET in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("operation", ["stream", "tool"])
async def test_calls_after_close_fail_instead_of_hanging(bedrock_settings, operation):
    service = BedrockService(bedrock_settings)
    service.close()
    service.close()  # idempotent
    with pytest.raises(ElementError, match="closed"):
        await asyncio.wait_for(_call(service, operation), 2)
