"""Re-running a run from one of its elements, re-using the results of everything else.

Contract (`POST /flows/{flow_id}/rerun`):
- `RerunRequest`: the new run's `flow_id` and `backend2_ws_url`, optional `from_element`
  (default: the element whose failure failed the original run), optional `initial_inputs`
  (default: the original's) and `element_overrides` (`{element_id: {config key: value}}`).
- `rerun_body(original, request)` is the new `/execute` body — the original's definition with
  the overrides set on their elements (inside an element's nested `config` object when it has
  one, since that wins) — or the problems of the request (an override of an unknown element,
  a `from_element` that is not in the flow — or is inside a sub-flow: a re-run starts at a
  top-level element, the problem names the one holding it — or cannot be chosen by default, an override of
  `type`, `element_id` or `config` itself). The body is then
  validated exactly like `/execute`.
- `reused_checkpoints(plan, from_element, checkpoints)`: what the re-run settles from, as
  cached results: the original's last checkpoint of every element reachable from the start
  but not from `from_element`. Each must have settled there — `completed`, `skipped`, or
  `failed` without failing the flow (`on_error` `continue` / `default`, or an error port) — else a problem names it (an element that never ran,
  was cancelled, waits, or failed the flow: re-run from it or from an element before it).
  `from_element` and everything downstream of it run anew. The original run is not touched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import RunSnapshot
from engine.graph import adjacency, reachable
from engine.plan import FlowPlan
from engine.run_store import ElementCheckpoint
from engine.validation import Problem

FIXED_KEYS = frozenset({"type", "element_id", "config"})


class RerunSource(TypedDict):
    """The original run as its coordinator hands it over (`running`: it is running now)."""

    running: bool
    body: bytes
    snapshot: RunSnapshot | None
    checkpoints: list[ElementCheckpoint]


class RerunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow_id: str = Field(min_length=1, max_length=200)
    backend2_ws_url: str = Field(min_length=1, max_length=2048)
    from_element: str | None = Field(default=None, min_length=1, max_length=200)
    initial_inputs: dict[str, Any] | None = None
    element_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)


def default_from_element(snapshot: RunSnapshot | None) -> str | None:
    """The element whose failure failed the run, if it failed that way."""
    error = snapshot["error"] if snapshot is not None else None
    return None if error is None else error.get("element_id")


def rerun_body(
    original: bytes, request: RerunRequest, snapshot: RunSnapshot | None
) -> tuple[dict[str, Any], str, list[Problem]]:
    """The new `/execute` body, the element to re-run from, and the request's problems."""
    body: dict[str, Any] = json.loads(original)
    definition = body["flow_definition"]
    elements: dict[str, dict[str, Any]] = definition["elements"]
    problems = [
        Problem(f"element_overrides.{element_id}", "is not an element of the flow")
        for element_id in request.element_overrides
        if element_id not in elements
    ]
    problems += [
        Problem(f"element_overrides.{element_id}.{key}", "cannot be overridden: a re-run keeps the flow's elements")
        for element_id, override in request.element_overrides.items()
        for key in override
        if key in FIXED_KEYS
    ]
    for element_id, override in request.element_overrides.items():
        if element_id in elements:
            target = elements[element_id]
            nested = target.get("config")
            (nested if isinstance(nested, dict) else target).update(override)
    from_element = request.from_element or default_from_element(snapshot) or ""
    if not from_element:
        problems.append(
            Problem("from_element", "the original run did not fail at an element: name the element to re-run from")
        )
    elif from_element not in elements:
        holder = holder_of(elements, from_element)
        if holder is None:
            problems.append(Problem("from_element", f"'{from_element}' is not an element of the flow"))
        else:
            problems.append(
                Problem(
                    "from_element",
                    f"'{from_element}' is inside the sub-flow of '{holder}': a re-run starts at an element of the "
                    f"flow itself — re-run from '{holder}' (its sub-flow runs anew)",
                )
            )
    body["flow_id"] = definition["flow_id"] = request.flow_id
    body["backend2_ws_url"] = request.backend2_ws_url
    if request.initial_inputs is not None:
        body["initial_inputs"] = request.initial_inputs
    return body, from_element, problems


def holder_of(elements: dict[str, dict[str, Any]], element_id: str) -> str | None:
    """The top-level element whose sub-flow (at any depth) has an element `element_id`, if any."""
    for top_id, top in elements.items():
        pending = [top]
        while pending:
            element = pending.pop()
            nested = element.get("config")
            flow = nested.get("flow") if isinstance(nested, dict) and "flow" in nested else element.get("flow")
            inner = flow.get("elements") if isinstance(flow, dict) else None
            if isinstance(inner, dict):
                if element_id in inner:
                    return top_id
                pending.extend(value for value in inner.values() if isinstance(value, dict))
    return None


def reused_checkpoints(
    plan: FlowPlan, from_element: str, checkpoints: Sequence[ElementCheckpoint]
) -> tuple[list[ElementCheckpoint], list[Problem]]:
    """The original's results the re-run takes as they are, or why it cannot."""
    anew = reachable(adjacency(plan.definition), from_element)
    latest = {checkpoint.element_id: checkpoint for checkpoint in checkpoints}
    reused, problems = [], []
    for element_id in plan.elements:
        if element_id in anew or element_id not in plan.reachable:
            continue
        checkpoint = latest.get(element_id)
        if checkpoint is not None and (
            checkpoint.state in ("completed", "skipped")
            or (checkpoint.state == "failed" and not plan.failure_fails_flow(element_id))
        ):
            reused.append(checkpoint)
            continue
        state = "never ran" if checkpoint is None else f"ended {checkpoint.state}"
        problems.append(
            Problem(
                "from_element",
                f"'{element_id}' is not downstream of '{from_element}' but {state} in the original run: "
                "re-run from it or from an element before it",
            )
        )
    return reused, problems
