"""`llm_structured`: Bedrock generation that returns JSON matching the element's `output_schema`.

Contract:
- Config: everything `llm_text` takes (prompt template, system prompt, model, inference
  parameters, history input) plus `tool_name` and `tool_description`.
- The model is forced (Converse `toolChoice`) to call one tool whose input schema is built from
  `output_schema`: each field's `type` (string, number, integer, boolean, object, array; `any`
  leaves it open), `description`, any extra JSON-schema keys of the port (`enum`, `items`,
  `properties`, …) and `required`.
- The tool input is checked against `output_schema` (types and required). On a mismatch there
  is ONE repair turn: the model's tool call is sent back with a `toolResult` of status `error`
  listing what was wrong. Still invalid → `element_error` `output_invalid` naming the fields.
- Outputs: exactly the schema's fields (optional ones the model left out are null).
- Needs a non-empty `output_schema` (checked before the flow runs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import Field

from elements.llm_text import LlmConfig, check_prompt_config, converse_request
from engine.element import ElementBase, ElementContext, Placement
from engine.errors import OutputValidationError
from engine.llm import ToolReply, ToolSpec
from engine.models import PortSpec
from engine.port_check import check_ports
from engine.settings import Settings

_TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


class LlmStructuredConfig(LlmConfig):
    tool_name: str = Field(default="structured_output", pattern=_TOOL_NAME_PATTERN)
    tool_description: str = Field(
        default="Return the answer as structured data with exactly these fields.", min_length=1, max_length=10_000
    )


def tool_input_schema(output_schema: dict[str, PortSpec]) -> dict[str, Any]:
    """A JSON schema (object) whose properties are the declared output fields."""
    properties = {name: _property_schema(spec) for name, spec in output_schema.items()}
    required = [name for name, spec in output_schema.items() if spec.required]
    return {"type": "object", "properties": properties, "required": required}


def _property_schema(spec: PortSpec) -> dict[str, Any]:
    schema: dict[str, Any] = dict(spec.model_extra or {})
    if spec.type != "any":
        schema["type"] = spec.type
    if spec.description:
        schema["description"] = spec.description
    return schema


def output_problems(reply: ToolReply, schema: dict[str, PortSpec]) -> list[str]:
    """What is wrong with the model's answer; empty when it fits `schema`."""
    if reply.tool_use_id is None:
        return [f"the model did not call the tool (stop reason: {reply.stop_reason})"]
    if not isinstance(reply.input, dict):
        return [f"the tool input must be a JSON object, got {type(reply.input).__name__}"]
    return check_ports(reply.input, schema)


def repair_messages(messages: list[dict[str, Any]], reply: ToolReply, problems: list[str]) -> list[dict[str, Any]]:
    """The conversation extended with the model's answer and a turn saying what to fix."""
    feedback = (
        "Your answer does not match the required schema: "
        + "; ".join(problems)
        + ". Call the tool again with every required field of the right type."
    )
    if reply.tool_use_id is not None:
        result = {"toolUseId": reply.tool_use_id, "content": [{"text": feedback}], "status": "error"}
        turn = {"role": "user", "content": [{"toolResult": result}]}
    else:
        turn = {"role": "user", "content": [{"text": feedback}]}
    if not reply.content:  # nothing to answer: add the feedback to the last user turn
        *head, last = messages
        return [*head, {"role": "user", "content": [*last["content"], *turn["content"]]}]
    return [*messages, {"role": "assistant", "content": reply.content}, turn]


class LlmStructuredElement(ElementBase[LlmStructuredConfig]):
    """Forced tool use on Bedrock; outputs the validated tool input's fields."""

    type_name = "llm_structured"
    placement = Placement.IO

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        problems = check_prompt_config(self.config)
        if not self.definition.output_schema:
            problems.append(("output_schema", "llm_structured needs an output_schema with at least one field"))
        return problems

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        schema = self.definition.output_schema
        tool = ToolSpec(self.config.tool_name, self.config.tool_description, tool_input_schema(schema))
        service = ctx.services.bedrock
        request = converse_request(self.config, inputs, ctx.settings)
        reply = await service.converse_tool(request, tool)
        problems = output_problems(reply, schema)
        if problems:
            retry = replace(request, messages=repair_messages(request.messages, reply, problems))
            reply = await service.converse_tool(retry, tool)
            problems = output_problems(reply, schema)
        if problems:
            raise OutputValidationError(
                f"'{self.definition.display_name}': the model's JSON still does not match output_schema after one repair: "
                + "; ".join(problems)
            )
        return {name: reply.input.get(name) for name in schema}
