"""Conversations for LLM calls: the one model of a turn, and its Bedrock Converse form.

Contract:
- A turn is `{role, content}`. `ROLE_ALIASES` is the one table of accepted roles, matched
  without regard to case: user/human → `user`, assistant/ai/bot/model → `assistant`, `system`.
  `parse_turns(items, name)` reads a list of such objects into `Turn`s with the canonical role;
  anything else is an `InputValidationError` naming the item (`history[3]`, `history[3].role`).
  `content` must be a string, unless `structured_content=True`: then any other JSON value
  becomes its JSON text. Both the `context_history` element and `build_conversation` use it.
- `build_conversation(prompt, history, system_prompt)` returns `(system, messages)`: `history`
  is a list of turns (as context_history outputs; None = none; structured content allowed),
  `system` turns join the system prompt, turns of the same role in a row are merged (Converse
  wants them alternating), leading assistant turns are dropped (Converse starts with the user),
  blank turns are skipped and `prompt` is the last user turn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.errors import InputValidationError

type Role = Literal["user", "assistant", "system"]

ROLE_ALIASES: Mapping[str, Role] = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Turn:
    """One message of a conversation, its role canonical."""

    role: Role
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def parse_turns(items: list[Any], name: str, *, structured_content: bool = False) -> list[Turn]:
    """`items` (the input called `name`) as turns; InputValidationError naming a malformed item."""
    return [_parse_turn(item, f"{name}[{index}]", structured_content) for index, item in enumerate(items)]


def _parse_turn(item: Any, where: str, structured_content: bool) -> Turn:
    if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
        raise InputValidationError(f"'{where}' must be an object with 'role' and 'content'")
    role = ROLE_ALIASES.get(str(item["role"]).lower())
    if role is None:
        raise InputValidationError(f"'{where}.role' is {item['role']!r}; use user, assistant or system")
    content = item["content"]
    if isinstance(content, str):
        return Turn(role, content)
    if not structured_content:
        raise InputValidationError(f"'{where}.content' must be a string, got {type(content).__name__}")
    return Turn(role, json.dumps(content, ensure_ascii=False, default=str))


def build_conversation(
    prompt: str, history: Any = None, system_prompt: str | None = None, history_name: str = "history"
) -> tuple[list[str], list[dict[str, Any]]]:
    """`(system, messages)` for Converse: history turns, then `prompt` as the last user turn.

    `history` is a list of `{role, content}`; `system` turns join the system prompt, turns of
    the same role in a row are merged (Converse wants them alternating), leading assistant
    turns are dropped (Converse starts with the user) and blank turns are skipped.
    """
    system = [system_prompt] if system_prompt else []
    turns: list[Turn] = []
    for turn in parse_turns(_history_items(history, history_name), history_name, structured_content=True):
        if not turn.content.strip():
            continue
        if turn.role == "system":
            system.append(turn.content)
        else:
            turns.append(turn)
    turns.append(Turn("user", prompt))
    return system, _merge_turns(turns)


def _history_items(history: Any, name: str) -> list[Any]:
    if history is None:
        return []
    if not isinstance(history, list):
        raise InputValidationError(
            f"'{name}' must be a list of {{role, content}} messages (the list output of context_history), "
            f"got {type(history).__name__}"
        )
    return history


def _merge_turns(turns: list[Turn]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if not messages and turn.role == "assistant":
            continue
        if messages and messages[-1]["role"] == turn.role:
            messages[-1]["content"].append({"text": turn.content})
        else:
            messages.append({"role": turn.role, "content": [{"text": turn.content}]})
    return messages
