"""The events of an open ConverseStream, read with a fast path for text deltas.

Contract: `events(stream)` yields what iterating botocore's `EventStream` yields — each event
as botocore parses it, in order, and botocore's errors (`EventStreamError` for an exception
frame, `ChecksumMismatch`, `InvalidHeadersLength`, …) — from the same raw HTTP stream. A
frame that is a text delta (`:message-type` `event`, `:event-type` `contentBlockDelta`, string
headers only, both CRC32s right, a JSON payload whose `delta` holds `text` alone) is decoded
here, without botocore's generic parsing: it is by far the most frequent frame, and botocore
spends ~100 µs of CPU on each (a cold path: one frame every few ms). Every other frame is
parsed by botocore itself; a frame whose prelude is implausible hands the rest of the stream to
botocore, which raises as it would have. A stream without botocore's raw stream (a test
double) is iterated as it is.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any, cast

import orjson
from botocore.eventstream import EventStreamBuffer

from services.bedrock.replies import EventStream, StreamEvent

_PRELUDE = struct.Struct("!III")  # total length, headers length, prelude CRC32
_CRC = struct.Struct("!I")
_VALUE_LENGTH = struct.Struct("!H")
_STRING = 7  # header value type of a string
_MAX_HEADERS = 128 * 1024  # botocore's limits: beyond them it raises
_MAX_PAYLOAD = 24 * 1024 * 1024
_FAST_HEADERS = {":message-type": "event", ":event-type": "contentBlockDelta"}


def events(stream: EventStream) -> Iterator[StreamEvent]:
    raw: Any = getattr(stream, "_raw_stream", None)
    parse: Callable[[Any], StreamEvent | None] | None = getattr(stream, "_parse_event", None)
    if raw is None or parse is None:
        yield from stream
        return
    pending = bytearray()
    chunks = raw.stream()
    for chunk in chunks:
        pending += chunk
        while len(pending) >= _PRELUDE.size:
            total, headers_length, _ = _PRELUDE.unpack_from(pending)
            if headers_length > _MAX_HEADERS or not 16 + headers_length <= total <= 16 + _MAX_HEADERS + _MAX_PAYLOAD:
                yield from _by_botocore(bytes(pending), chunks, parse)  # it raises as it would have
                return
            if len(pending) < total:
                break
            frame = bytes(pending[:total])
            del pending[:total]
            event = _text_delta(frame, headers_length) or _parsed(frame, parse)
            if event:
                yield event


def _text_delta(frame: bytes, headers_length: int) -> StreamEvent | None:
    """The frame's event if it is a well-formed text delta, else None (botocore parses it)."""
    end = len(frame) - 4
    if (
        zlib.crc32(frame[:8]) != _CRC.unpack_from(frame, 8)[0]
        or zlib.crc32(frame[:end]) != _CRC.unpack_from(frame, end)[0]
    ):
        return None
    headers: dict[str, str] = {}
    at, headers_end = 12, 12 + headers_length
    while at < headers_end:
        name_length = frame[at]
        name = frame[at + 1 : at + 1 + name_length]
        at += 1 + name_length
        if at + 3 > headers_end or frame[at] != _STRING:
            return None
        (length,) = _VALUE_LENGTH.unpack_from(frame, at + 1)
        at += 3
        try:
            headers[name.decode()] = frame[at : at + length].decode()
        except UnicodeDecodeError:
            return None
        at += length
    if at != headers_end or any(headers.get(key) != value for key, value in _FAST_HEADERS.items()):
        return None
    try:
        payload = orjson.loads(frame[headers_end:end])
    except orjson.JSONDecodeError:
        return None
    delta = payload.get("delta") if isinstance(payload, dict) else None
    index = payload.get("contentBlockIndex") if isinstance(payload, dict) else None
    if not isinstance(delta, dict) or delta.keys() != {"text"} or not isinstance(delta["text"], str):
        return None
    if not isinstance(index, int) or isinstance(index, bool):
        return None
    return cast(StreamEvent, {"contentBlockDelta": {"delta": {"text": delta["text"]}, "contentBlockIndex": index}})


def _parsed(frame: bytes, parse: Callable[[Any], StreamEvent | None]) -> StreamEvent | None:
    """One whole frame, framed and parsed by botocore (its errors included)."""
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    return parse(next(buffer))


def _by_botocore(
    pending: bytes, chunks: Iterator[bytes], parse: Callable[[Any], StreamEvent | None]
) -> Iterator[StreamEvent]:
    """The rest of the stream as botocore reads it."""
    buffer = EventStreamBuffer()
    buffer.add_data(pending)
    while True:
        for message in buffer:
            event = parse(message)
            if event:
                yield event
        chunk = next(chunks, None)
        if chunk is None:
            return
        buffer.add_data(chunk)
