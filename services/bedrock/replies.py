"""Bedrock Converse answers read into `engine.llm` types: the one place that knows their shape.

Contract: boto3 returns untyped dicts. The TypedDicts here describe the parts of an answer the
service reads — a `converse` answer (`ConverseResponse`) and the events of a `converse_stream`
(`StreamEvent`) — every key optional, read with `.get`, so an absent key is an absent value.
- `usage_dict(usage)`: Converse `usage` in snake_case: `input_tokens`, `output_tokens`,
  `total_tokens` (0 when absent).
- `TextCollector` folds ConverseStream events into one `StreamEnd`: the full text (the
  concatenated text deltas), usage (from `metadata`) and stop reason (from `messageStop`);
  `add(event)` returns the event's text delta, if any.
- `tool_reply(response)`: a forced-tool `converse` answer as `ToolReply`: the first `toolUse`
  block's id and input (both None when the model called no tool), the assistant content as
  returned (for a repair turn), usage and stop reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypedDict

from engine.llm import StreamEnd, ToolReply


class Usage(TypedDict, total=False):
    inputTokens: int
    outputTokens: int
    totalTokens: int


class _Delta(TypedDict, total=False):
    text: str


class _ContentBlockDelta(TypedDict, total=False):
    delta: _Delta


class _MessageStop(TypedDict, total=False):
    stopReason: str


class _Metadata(TypedDict, total=False):
    usage: Usage


class StreamEvent(TypedDict, total=False):
    """One event of a ConverseStream (other kinds exist; they carry nothing read here)."""

    contentBlockDelta: _ContentBlockDelta
    messageStop: _MessageStop
    metadata: _Metadata


class EventStream(Protocol):
    """botocore's `EventStream`: the events as their frames are parsed; `close` ends the read."""

    def __iter__(self) -> Iterator[StreamEvent]: ...

    def close(self) -> None: ...


class ConverseStreamResponse(TypedDict):
    stream: EventStream


class _Message(TypedDict, total=False):
    content: list[dict[str, Any]]  # content blocks, passed on as returned


class _Output(TypedDict, total=False):
    message: _Message


class ConverseResponse(TypedDict, total=False):
    output: _Output
    usage: Usage
    stopReason: str


def usage_dict(usage: Usage | None) -> dict[str, int]:
    """Converse `usage` in snake_case: input_tokens, output_tokens, total_tokens."""
    usage = usage or {}
    return {
        "input_tokens": int(usage.get("inputTokens") or 0),
        "output_tokens": int(usage.get("outputTokens") or 0),
        "total_tokens": int(usage.get("totalTokens") or 0),
    }


class TextCollector:
    """Folds ConverseStream events into the full text, usage and stop reason."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.usage: dict[str, int] = usage_dict(None)
        self.stop_reason: str | None = None

    def add(self, event: StreamEvent) -> str | None:
        """The text delta of `event`, if any."""
        if "contentBlockDelta" in event:
            text = event["contentBlockDelta"].get("delta", {}).get("text")
            if text:
                self.parts.append(text)
            return text or None
        if "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        elif "metadata" in event:
            self.usage = usage_dict(event["metadata"].get("usage"))
        return None

    def end(self) -> StreamEnd:
        return StreamEnd("".join(self.parts), self.usage, self.stop_reason)


def tool_reply(response: ConverseResponse) -> ToolReply:
    """The forced tool call in a `converse` answer, with the content to send back on repair."""
    content = response.get("output", {}).get("message", {}).get("content", [])
    tool_use = next((block["toolUse"] for block in content if "toolUse" in block), None)
    return ToolReply(
        tool_use_id=tool_use.get("toolUseId") if tool_use else None,
        input=tool_use.get("input") if tool_use else None,
        content=content,
        usage=usage_dict(response.get("usage")),
        stop_reason=response.get("stopReason"),
    )
