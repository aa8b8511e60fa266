"""services/bedrock/frames.py yields exactly what botocore's EventStream yields (events and
errors), over the fake Bedrock's real frames cut into chunks anywhere."""

from __future__ import annotations

import random

import boto3
import pytest
from botocore.eventstream import EventStream
from botocore.parsers import EventStreamJSONParser

from services.bedrock.frames import events
from tests.fakes.bedrock_server import encode_frame, event_frame, exception_frame

_CLIENT = boto3.client("bedrock-runtime", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="y")
_SHAPE = _CLIENT.meta.service_model.operation_model("ConverseStream").output_shape.members["stream"]


class _Raw:
    """urllib3's response as botocore reads it: `stream()` yields the body in chunks."""

    def __init__(self, body: bytes, seed: int):
        rng = random.Random(seed)
        self.chunks, at = [], 0
        while at < len(body):
            size = rng.choice([1, 3, 7, 20, 64, 500, 4096])
            self.chunks.append(body[at : at + size])
            at += size

    def stream(self):
        yield from self.chunks

    def close(self):
        pass


def _stream(body: bytes, seed: int) -> EventStream:
    return EventStream(_Raw(body, seed), _SHAPE, EventStreamJSONParser(), "ConverseStream")


def _outcome(iterate, body: bytes, seed: int):
    seen = []
    try:
        for event in iterate(_stream(body, seed)):
            seen.append(event)
    except Exception as exc:  # the error botocore raises, compared by type and text
        return seen, (type(exc).__name__, str(exc))
    return seen, None


def _delta(text, **extra):
    return event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}, **extra})


STREAM = [
    event_frame("messageStart", {"role": "assistant"}),
    _delta("Hello"),
    _delta(", wörld 𝄞 \u2028"),
    _delta("padded", p="abcdefghijklmnopqrstuvwxyz"),  # Bedrock pads payloads with a `p` member
    event_frame("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"a": 1}'}}}),
    event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": ""}}),
    event_frame("contentBlockStop", {"contentBlockIndex": 0}),
    event_frame("messageStop", {"stopReason": "end_turn"}),
    event_frame("metadata", {"usage": {"inputTokens": 3, "outputTokens": 4, "totalTokens": 7}, "metrics": {}}),
]


def _corrupt(frame: bytes) -> bytes:
    return frame[:-6] + bytes([frame[-6] ^ 0xFF]) + frame[-5:]


@pytest.mark.parametrize(
    "frames",
    [
        STREAM,
        [*STREAM[:3], exception_frame("modelStreamErrorException", "The model stream failed."), *STREAM[3:]],
        [*STREAM[:2], _corrupt(_delta("bad crc")), *STREAM[2:]],
        [*STREAM[:2], b"\xff\xff\xff\xff" + _delta("huge")[4:]],  # an impossible total length
        [*STREAM[:2], encode_frame({":event-type": "contentBlockDelta", ":message-type": "event"}, {"delta": {}})],
    ],
    ids=["text", "exception", "checksum", "prelude", "no-content-type"],
)
@pytest.mark.parametrize("seed", range(4))
def test_the_same_events_and_errors_as_botocore(frames, seed):
    body = b"".join(frames)
    ours, theirs = _outcome(events, body, seed), _outcome(iter, body, seed)
    assert ours == theirs
    assert ours[0]  # something was read before any error


def test_a_stream_without_botocore_internals_is_iterated_as_is():
    items = [{"messageStart": {"role": "assistant"}}]
    assert list(events(items)) == items
