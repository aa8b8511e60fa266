"""`case` and `flow_select`: elements that pick which outgoing branch is taken.

Both pass their inputs through as outputs; connections from them name a branch in
`from_output`, and the scheduler skips the connections of branches not taken.
- `case`: ordered `cases`, each `{id, conditions: [...], combinator: "all"|"any"}`; the first
  case that holds selects the branch named by its id, else `default`. Adds `matched_case`.
- `flow_select`: the branch whose name equals the selection — the input named by
  `selection_input` (default `selection`), or the static `selection` — else `default`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from elements.conditions import Condition
from engine.element import ElementBase, ElementContext, ElementResult

DEFAULT_BRANCH = "default"


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    conditions: list[Condition] = Field(min_length=1)
    combinator: Literal["all", "any"] = "all"

    def holds(self, inputs: dict[str, Any]) -> bool:
        results = (condition.holds(inputs, self.id) for condition in self.conditions)
        return all(results) if self.combinator == "all" else any(results)


class CaseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cases: list[Case] = Field(min_length=1)

    @field_validator("cases")
    @classmethod
    def _unique_ids(cls, cases: list[Case]) -> list[Case]:
        ids = [case.id for case in cases]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"case ids must be unique; repeated: {', '.join(duplicates)}")
        if DEFAULT_BRANCH in ids:
            raise ValueError(f"'{DEFAULT_BRANCH}' is reserved for the branch taken when no case holds")
        return cases


class CaseElement(ElementBase[CaseConfig]):
    type_name = "case"
    routes = True

    def branch_ports(self) -> frozenset[str]:
        return frozenset(case.id for case in self.config.cases) | {DEFAULT_BRANCH}

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        chosen = next((case.id for case in self.config.cases if case.holds(inputs)), DEFAULT_BRANCH)
        return ElementResult(outputs={**inputs, "matched_case": chosen}, ports=frozenset({chosen}))


class FlowSelectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branches: list[str] = Field(min_length=1)
    selection_input: str = "selection"
    selection: str | None = None


class FlowSelectElement(ElementBase[FlowSelectConfig]):
    type_name = "flow_select"
    routes = True

    def branch_ports(self) -> frozenset[str]:
        return frozenset(self.config.branches) | {DEFAULT_BRANCH}

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        wanted = inputs.get(self.config.selection_input, self.config.selection)
        chosen = str(wanted) if wanted is not None and str(wanted) in self.config.branches else DEFAULT_BRANCH
        return ElementResult(outputs={**inputs, "selected_branch": chosen}, ports=frozenset({chosen}))
