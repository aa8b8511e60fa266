"""Response bodies of the HTTP API, as pydantic models or `engine.contracts` shapes, so `/docs`
shows them: a run's status is the scheduler's `RunSnapshot` plus its delivery state, a problem
is `ProblemInfo`, an event the envelope `EventMessage` — one definition each.

Contract: `problems_body(detail, problems)` is the 422 body. It bounds what it is given, as
`engine.validation.bound_problems` does (at most `MAX_PROBLEMS_CEILING` problems and
`MAX_PROBLEMS_BYTES` of JSON, each message and path cut and escaped, then `… and N more
problems`), so no caller can answer an unbounded or control-character-laden 422; lists that
validation already bounded pass unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field

from engine.contracts import ErrorInfo, EventMessage, ProblemInfo, RunSnapshot
from engine.validation import MAX_PROBLEMS_CEILING, Problem, bound_problems


class Started(BaseModel):
    status: str = "started"
    flow_id: str
    message: str = "Flow execution started and streaming to Backend 2"
    warnings: list[ProblemInfo] = []


class Validated(BaseModel):
    status: str = "valid"
    flow_id: str
    warnings: list[ProblemInfo] = []


class Problems(BaseModel):
    detail: str
    problems: list[ProblemInfo]


class ResumeIn(BaseModel):
    """`POST /flows/{flow_id}/resume`: the element the flow waits at, and what it is given."""

    model_config = ConfigDict(extra="forbid")

    element_id: str = Field(min_length=1, max_length=200)
    inputs: dict[str, Any] = Field(default_factory=dict)


class ResumedOut(BaseModel):
    status: str = "resumed"
    flow_id: str


class Health(BaseModel):
    status: str = "healthy"
    custom_code_isolation: str | None = None  # the sandbox's OS layer; `disabled` with ALLOW_CUSTOM_CODE=false
    coordinators: int | None = None  # the size of the coordinator pool this replica sends new flows over


class FlowStatusOut(RunSnapshot):
    delivery: NotRequired[dict[str, Any] | None]  # the streamer's state of delivery to Backend 2


class EventsOut(BaseModel):
    flow_id: str
    events: list[EventMessage]


class RunOut(BaseModel):
    flow_id: str
    status: str
    created_at: float  # Unix seconds
    finished_at: float | None = None
    duration_ms: float | None = None
    error: ErrorInfo | None = None
    waiting: list[str] = []  # a paused run: the elements it waits at


class RunsOut(BaseModel):
    runs: list[RunOut]
    next: str | None = None  # pass as `before` for the next page


class ElementOut(BaseModel):
    element_id: str
    state: str
    outputs: dict[str, Any] | None = None  # full, never shortened
    ports: list[str] | None = None
    attempts: int = 0
    started_at: str | None = None
    duration_ms: float | None = None
    error: ErrorInfo | None = None


def problems_body(detail: str, problems: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    given = [
        Problem(
            str(p.get("path", "$")), str(p.get("message", "")), "warning" if p.get("severity") == "warning" else "error"
        )
        for p in problems
    ]
    bounded = bound_problems(given, MAX_PROBLEMS_CEILING)
    return Problems(detail=detail, problems=[p.as_dict() for p in bounded]).model_dump()
