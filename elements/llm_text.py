"""`llm_text`: text generation on AWS Bedrock, streamed token by token.

Contract:
- Config: `wrapper_prompt` (default `{prompt}`) whose `{placeholders}` are filled from the
  inputs (`{{`/`}}` for literal braces; strings as they are, other values as JSON; a missing or
  null input is an `element_error` of type `missing_placeholder` naming it), optional
  `system_prompt`, `model_id` (default `BEDROCK_MODEL_ID`), `temperature`, `max_tokens`,
  `top_p`, `stop_sequences`, and `history_input` (default `history`): the input holding a
  conversation (`[{role, content}]`, as context_history produces) sent before the prompt.
- Every text delta is relayed at once with `ctx.emit_chunk` (an `llm_chunk` event).
- Outputs: `llm_output` (the full text, equal to the concatenated chunks), `usage`
  (`input_tokens`, `output_tokens`, `total_tokens`), `stop_reason`.
- Cancellation closes the Bedrock stream at once (see services/bedrock/streaming.py); Bedrock
  failures are element errors with the types listed in services/bedrock/errors.py.

The prompt helpers and `LlmConfig` here are shared with `llm_structured`.
"""

from __future__ import annotations

import json
import string
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.conversation import build_conversation
from engine.element import ElementBase, ElementContext, Placement
from engine.errors import ElementError
from engine.llm import ConverseRequest, InferenceParams
from engine.settings import Settings

_FORMATTER = string.Formatter()
_PLACEHOLDER_HINT = "placeholders are plain input names such as {prompt}; write {{ and }} for literal braces"


class LlmConfig(BaseModel):
    """Settings shared by the Bedrock elements."""

    model_config = ConfigDict(extra="ignore")

    wrapper_prompt: str = Field(default="{prompt}", min_length=1, max_length=200_000)
    system_prompt: str | None = Field(default=None, max_length=200_000)
    model_id: str | None = Field(default=None, min_length=1, max_length=2048)
    temperature: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop_sequences: list[str] = Field(default_factory=list, max_length=100)
    history_input: str = Field(default="history", min_length=1)

    def inference(self) -> InferenceParams:
        return InferenceParams(self.temperature, self.max_tokens, self.top_p, tuple(self.stop_sequences))


# -- prompt template -------------------------------------------------------------------------


def parse_template(template: str) -> list[tuple[str, str | None]]:
    """`(literal, placeholder name or None)` pairs; ValueError for bad braces or fancy fields."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc}: {_PLACEHOLDER_HINT}") from None
    for _literal, name, spec, conversion in parsed:
        if name is not None and (not name or any(c in name for c in ".[]") or spec or conversion):
            shown = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"placeholder {{{shown}}} is not allowed: {_PLACEHOLDER_HINT}")
    return [(literal, name) for literal, name, _spec, _conversion in parsed]


def placeholders(template: str) -> list[str]:
    """Input names used in `template`, in order."""
    return [name for _literal, name in parse_template(template) if name is not None]


def render_prompt(template: str, inputs: dict[str, Any], field: str = "wrapper_prompt") -> str:
    """`template` with every `{name}` replaced by `inputs[name]`; ElementError when one is missing."""
    try:
        parsed = parse_template(template)
    except ValueError as exc:
        raise ElementError(f"'{field}' is malformed: {exc}", error_type="invalid_config") from None
    parts = []
    for literal, name in parsed:
        parts.append(literal)
        if name is not None:
            parts.append(_placeholder_text(name, inputs, field))
    return "".join(parts)


def _placeholder_text(name: str, inputs: dict[str, Any], field: str) -> str:
    value = inputs.get(name)
    if value is None:
        known = ", ".join(sorted(inputs)) or "none"
        raise ElementError(
            f"'{field}' uses {{{name}}} but the element received no input '{name}' (inputs: {known}); "
            "connect an output to it or remove the placeholder",
            error_type="missing_placeholder",
        )
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def check_prompt_config(config: LlmConfig) -> list[tuple[str, str]]:
    """Validation problems of the prompt template, for `ElementBase.check`."""
    try:
        placeholders(config.wrapper_prompt)
    except ValueError as exc:
        return [("wrapper_prompt", str(exc))]
    return []


# -- request ---------------------------------------------------------------------------------


def converse_request(config: LlmConfig, inputs: dict[str, Any], settings: Settings) -> ConverseRequest:
    """The Converse request of one run: history, rendered prompt, system prompt, parameters."""
    prompt = render_prompt(config.wrapper_prompt, inputs)
    if not prompt.strip():
        raise ElementError("the rendered 'wrapper_prompt' is empty; Bedrock needs some text", error_type="validation")
    system, messages = build_conversation(
        prompt, inputs.get(config.history_input), config.system_prompt, config.history_input
    )
    model_id = config.model_id or settings.bedrock_model_id
    return ConverseRequest(model_id=model_id, messages=messages, system=system, inference=config.inference())


class LlmTextElement(ElementBase[LlmConfig]):
    """Streams a Bedrock completion; each delta becomes an `llm_chunk` event."""

    type_name = "llm_text"
    placement = Placement.IO
    streams = True
    fixed_outputs = frozenset({"llm_output", "usage", "stop_reason"})

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        return check_prompt_config(self.config)

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        request = converse_request(self.config, inputs, ctx.settings)
        end = await ctx.services.bedrock.generate_text(request, ctx.emit_chunk)
        return {"llm_output": end.text, "usage": end.usage, "stop_reason": end.stop_reason}
