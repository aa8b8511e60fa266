"""A conversation for an LLM call: history turns plus the prompt, in Bedrock Converse form.

Contract: `build_conversation(prompt, history, system_prompt)` returns `(system, messages)`:
`history` is a list of `{role, content}` (roles user/human, assistant/ai/bot/model, system),
`system` turns join the system prompt, turns of the same role in a row are merged (Converse
wants them alternating), leading assistant turns are dropped (Converse starts with the user),
blank turns are skipped and `prompt` is the last user turn. A malformed history is an
`InputValidationError` naming the item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.errors import InputValidationError

_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


def build_conversation(
    prompt: str, history: Any = None, system_prompt: str | None = None, history_name: str = "history"
) -> tuple[list[str], list[dict[str, Any]]]:
    """`(system, messages)` for Converse: history turns, then `prompt` as the last user turn.

    `history` is a list of `{role, content}`; `system` turns join the system prompt, turns of
    the same role in a row are merged (Converse wants them alternating), leading assistant
    turns are dropped (Converse starts with the user) and blank turns are skipped.
    """
    system = [system_prompt] if system_prompt else []
    turns: list[tuple[str, str]] = []
    for index, item in enumerate(_history_items(history, history_name)):
        role, text = _history_turn(item, f"{history_name}[{index}]")
        if not text.strip():
            continue
        if role == "system":
            system.append(text)
        else:
            turns.append((role, text))
    turns.append(("user", prompt))
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


def _history_turn(item: Any, where: str) -> tuple[str, str]:
    if not isinstance(item, Mapping) or "role" not in item or "content" not in item:
        raise InputValidationError(f"'{where}' must be an object with 'role' and 'content'")
    role = _ROLES.get(str(item["role"]).lower())
    if role is None:
        raise InputValidationError(f"'{where}.role' is {item['role']!r}; use user, assistant or system")
    content = item["content"]
    return role, content if isinstance(content, str) else _json_text(content)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _merge_turns(turns: list[tuple[str, str]]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for role, text in turns:
        if not messages and role == "assistant":
            continue
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].append({"text": text})
        else:
            messages.append({"role": role, "content": [{"text": text}]})
    return messages
