"""`iteration`, `loop` and `sub_flow`: elements that run an inline sub-flow.

Each has a `flow` — elements, connections and `start_element_id`, the shape of
`flow_definition` — validated like a flow (problems at paths through it:
`flow_definition.elements.each.flow.elements.llm.wrapper_prompt`), with exactly one start and
at least one `end`, no `wait_for_input`, nested at most `MAX_FLOW_DEPTH` levels. A run of the
sub-flow starts with the inputs given here and its `end` element's outputs are its result; its
elements run in the flow's own run (their events carry a `scope`: `[{"element_id", "index"}]`,
outermost first), so cancel, timeouts and the flow's deadline reach them, and their
checkpoints let a resumed flow skip what completed.

- `iteration`: one run per item of the list input `items_input` (default `items`), each
  starting with the element's other inputs plus `item` and `index`; at most `parallelism` at
  once (1 to `MAX_ITERATION_PARALLELISM`). Outputs `results` (item order) and `errors`
  (`{index, error_type, message}`). `on_item_error`: `fail` (the element fails with the first
  item error, the other runs are cancelled), `continue` (that item's result is `null`), `drop`
  (left out of `results`).
- `loop`: runs the sub-flow again and again; run k starts with the element's inputs, updated by
  the outputs of run k-1, plus `iteration` (k, from 0). After each run `until` (the condition
  format of `case`: `{conditions, combinator}`) is checked against its outputs plus
  `iteration`; the loop stops when it holds or after `max_iterations` runs (required, at most
  `MAX_LOOP_ITERATIONS`). Outputs: the last run's outputs plus `iterations` (runs made) and
  `until_met`.
- `sub_flow`: one run with the element's inputs; its outputs are the end element's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from elements.conditions import Condition
from engine.element import ElementBase, ElementContext, SubFlowRunner
from engine.errors import InputValidationError, SubFlowFailed
from engine.models import FlowGraph
from engine.settings import Settings


class SubFlowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flow: FlowGraph


class IterationConfig(SubFlowConfig):
    items_input: str = Field(default="items", min_length=1, max_length=128)
    parallelism: int = Field(default=1, ge=1)
    on_item_error: Literal["fail", "continue", "drop"] = "fail"


class Until(BaseModel):
    """When a loop stops: the conditions of a `case`, over the outputs of a run plus `iteration`."""

    model_config = ConfigDict(extra="forbid")

    conditions: list[Condition] = Field(min_length=1)
    combinator: Literal["all", "any"] = "all"

    def holds(self, values: dict[str, Any], element_id: str) -> bool:
        results = (condition.holds(values, f"{element_id}.until") for condition in self.conditions)
        return all(results) if self.combinator == "all" else any(results)


class LoopConfig(SubFlowConfig):
    max_iterations: int = Field(ge=1)
    until: Until | None = None


def _runner(ctx: ElementContext) -> SubFlowRunner:
    if ctx.sub_flow is None:  # the scheduler gives one to every element with an inner flow
        raise RuntimeError("this element runs a sub-flow but its context has no sub-flow runner")
    return ctx.sub_flow


class _RunsSubFlow[C: SubFlowConfig](ElementBase[C]):
    def inner_flow(self) -> FlowGraph:
        return self.config.flow


class SubFlowElement(_RunsSubFlow[SubFlowConfig]):
    type_name = "sub_flow"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        return await _runner(ctx).run(dict(inputs), 0)


class IterationElement(_RunsSubFlow[IterationConfig]):
    type_name = "iteration"
    fixed_outputs = frozenset({"results", "errors"})

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        limit = settings.max_iteration_parallelism
        if self.config.parallelism > limit:
            return [("parallelism", f"must be at most {limit} (MAX_ITERATION_PARALLELISM)")]
        return []

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        name = self.config.items_input
        items = inputs.get(name)
        if not isinstance(items, list):
            found = "nothing" if items is None else type(items).__name__
            raise InputValidationError(f"iteration '{self.element_id}': input '{name}' must be a list, got {found}")
        shared = {key: value for key, value in inputs.items() if key != name}
        results: list[Any] = [None] * len(items)
        errors: list[dict[str, Any]] = []
        dropped: set[int] = set()
        runner = _runner(ctx)
        pending: Iterator[tuple[int, Any]] = iter(enumerate(items))

        async def worker() -> None:
            for index, item in pending:  # shared by the workers: each takes the next item
                try:
                    results[index] = await runner.run({**shared, "item": item, "index": index}, index)
                except SubFlowFailed as exc:
                    if self.config.on_item_error == "fail":
                        raise SubFlowFailed(f"item {index}: {exc.message}", error_type=exc.error_type) from None
                    errors.append({"index": index, "error_type": exc.error_type, "message": exc.message})
                    if self.config.on_item_error == "drop":
                        dropped.add(index)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.config.parallelism, len(items))):
                    group.create_task(worker())
        except* SubFlowFailed as failed:  # the first item error, with on_item_error "fail"
            raise failed.exceptions[0] from None
        errors.sort(key=lambda error: error["index"])
        kept = [result for index, result in enumerate(results) if index not in dropped]
        return {"results": kept, "errors": errors}


class LoopElement(_RunsSubFlow[LoopConfig]):
    type_name = "loop"
    fixed_outputs = frozenset({"iterations", "until_met"})

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        limit = settings.max_loop_iterations
        if self.config.max_iterations > limit:
            return [("max_iterations", f"must be at most {limit:,} (MAX_LOOP_ITERATIONS)")]
        return []

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        runner = _runner(ctx)
        carried = dict(inputs)
        outputs: dict[str, Any] = {}
        until = self.config.until
        for iteration in range(self.config.max_iterations):
            outputs = await runner.run({**carried, "iteration": iteration}, iteration)
            if until is not None and until.holds({**outputs, "iteration": iteration}, self.element_id):
                return {**outputs, "iterations": iteration + 1, "until_met": True}
            carried.update(outputs)
        return {**outputs, "iterations": self.config.max_iterations, "until_met": False}
