"""`wait_for_input`: the flow waits here for a person or a program (an approval, a wallet's signature).

Config: `prompt` (text for the person or the frontend; `{placeholders}` filled from the data
its incoming connections deliver, as in `llm_text`; default empty). The common `timeout` field
(seconds, at most 86,400) bounds the wait: then an `element_error` `timed_out`, and `on_error`
applies; without it the flow waits until resumed or cancelled. The element's `input_schema`
describes what the resume must supply — it is checked against `POST /flows/{id}/resume`'s
`inputs`, not against what the incoming connections deliver — and the resume's inputs are its
outputs. Reaching it, the run goes on with every other branch that can run; once nothing else
can, the run pauses (status `paused`, a `flow_paused` event per waiting element).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from elements.llm_text import parse_template, render_prompt
from engine.element import ElementBase, ElementContext, Wait


class WaitConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(default="", max_length=100_000)

    @field_validator("prompt")
    @classmethod
    def _template(cls, value: str) -> str:
        parse_template(value)  # bad braces are a validation problem, before anything runs
        return value


class WaitForInputElement(ElementBase[WaitConfig]):
    type_name = "wait_for_input"
    waits = True

    def wait(self, inputs: dict[str, Any]) -> Wait:
        return Wait(render_prompt(self.config.prompt, inputs, "prompt"), self.definition.timeout)

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        raise AssertionError("wait_for_input is never executed: the scheduler pauses the flow there")
