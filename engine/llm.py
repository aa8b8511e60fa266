"""What an LLM call is, independent of any SDK: the request and reply types of the LLM service.

Contract: `ConverseRequest` is one call (model, Converse-form messages, system prompts,
inference parameters); `ToolSpec` a tool the model is forced to call; `StreamEnd` the last item
of a streamed answer (full text, token usage, stop reason); `ToolReply` what a forced tool call
returned. `to_kwargs` / `to_config` give their Bedrock Converse form. Elements build these; the
service (`services.bedrock`, behind `engine.ports.LlmService`) sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class InferenceParams:
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop_sequences: Sequence[str] = ()

    def to_config(self) -> dict[str, Any]:
        values = {"temperature": self.temperature, "maxTokens": self.max_tokens, "topP": self.top_p}
        config: dict[str, Any] = {key: value for key, value in values.items() if value is not None}
        if self.stop_sequences:
            config["stopSequences"] = list(self.stop_sequences)
        return config


@dataclass(frozen=True)
class ConverseRequest:
    """One Converse call: `messages` in Converse form (see `build_conversation`)."""

    model_id: str
    messages: list[dict[str, Any]]
    system: Sequence[str] = ()
    inference: InferenceParams = field(default_factory=InferenceParams)

    def to_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"modelId": self.model_id, "messages": self.messages}
        if self.system:
            kwargs["system"] = [{"text": text} for text in self.system]
        inference = self.inference.to_config()
        if inference:
            kwargs["inferenceConfig"] = inference
        return kwargs


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model is forced to call; `input_schema` is a JSON schema of an object."""

    name: str
    description: str
    input_schema: dict[str, Any]

    def to_config(self) -> dict[str, Any]:
        spec = {"name": self.name, "description": self.description, "inputSchema": {"json": self.input_schema}}
        return {"tools": [{"toolSpec": spec}], "toolChoice": {"tool": {"name": self.name}}}


@dataclass(frozen=True)
class StreamEnd:
    """The end of a text stream (what `generate_text` returns)."""

    text: str
    usage: dict[str, int]
    stop_reason: str | None


@dataclass(frozen=True)
class ToolReply:
    """What `converse_tool` got back. `tool_use_id` is None when the model did not call the tool."""

    tool_use_id: str | None
    input: Any
    content: list[dict[str, Any]]  # the assistant message's content, as returned
    usage: dict[str, int]
    stop_reason: str | None
