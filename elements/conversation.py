"""`chat_input` and `context_history`: the user's message and the conversation so far.

- `chat_input`: outputs `message`, read from the input named by `input_key` (default
  `message`; the start element passes `initial_inputs` on), else `default`, else an error.
- `context_history`: reads a list of `{role, content}` (roles user/assistant/system, content a
  string) from the input named by `input_key` (default `history`; absent = empty), keeps the
  last `max_messages`, outputs `history` (list) and `history_text` (`role: content` lines). A
  malformed item is an `input_invalid` error naming it (`history[3]`, `history[3].role`).
  Turns are read with `engine.conversation.parse_turns`, the model `llm_text` /
  `llm_structured` read their history with: roles go through its alias table (human → user;
  ai, bot, model → assistant; any case) and are output canonical. Accepting the aliases was
  chosen when the two were unified (this element used to refuse them while the LLM elements
  took them). Unlike the LLM elements, it still wants `content` as a string.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.conversation import parse_turns
from engine.element import ElementBase, ElementContext
from engine.errors import InputValidationError


class ChatInputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_key: str = "message"
    default: str | None = None


class ChatInputElement(ElementBase[ChatInputConfig]):
    type_name = "chat_input"
    fixed_outputs = frozenset({"message"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        message = inputs.get(self.config.input_key, self.config.default)
        if message is None:
            raise InputValidationError(
                f"chat_input '{self.definition.display_name}': no input '{self.config.input_key}'; "
                "send it in initial_inputs or set 'default'"
            )
        if not isinstance(message, str):
            raise InputValidationError(
                f"chat_input '{self.definition.display_name}': '{self.config.input_key}' must be a string, "
                f"got {type(message).__name__}"
            )
        return {"message": message}


class ContextHistoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_key: str = "history"
    max_messages: int = Field(default=20, ge=1, le=10_000)


class ContextHistoryElement(ElementBase[ContextHistoryConfig]):
    type_name = "context_history"
    fixed_outputs = frozenset({"history", "history_text"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        raw = inputs.get(self.config.input_key) or []
        if not isinstance(raw, list):
            raise InputValidationError(f"'{self.config.input_key}' must be a list of {{role, content}} objects")
        window = parse_turns(raw, self.config.input_key)[-self.config.max_messages :]
        return {
            "history": [turn.to_dict() for turn in window],
            "history_text": "\n".join(f"{turn.role}: {turn.content}" for turn in window),
        }
