"""Response bodies of the HTTP API, as pydantic models so `/docs` shows them.

Contract: `problems_body(detail, problems)` is the 422 body. It bounds what it is given, as
`engine.validation.bound_problems` does (at most `MAX_PROBLEMS_CEILING` problems and
`MAX_PROBLEMS_BYTES` of JSON, each message and path cut and escaped, then `… and N more
problems`), so no caller can answer an unbounded or control-character-laden 422; lists that
validation already bounded pass unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from engine.validation import MAX_PROBLEMS_CEILING, Problem, bound_problems


class ProblemOut(BaseModel):
    path: str
    message: str
    severity: str = "error"


class Started(BaseModel):
    status: str = "started"
    flow_id: str
    message: str = "Flow execution started and streaming to Backend 2"
    warnings: list[ProblemOut] = []


class Validated(BaseModel):
    status: str = "valid"
    flow_id: str
    warnings: list[ProblemOut] = []


class Problems(BaseModel):
    detail: str
    problems: list[ProblemOut]


class Health(BaseModel):
    status: str = "healthy"
    custom_code_isolation: str | None = None  # the sandbox's OS layer; `disabled` with ALLOW_CUSTOM_CODE=false


class FlowStatusOut(BaseModel):
    flow_id: str
    status: str
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: float | None = None
    elements: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Any] = {}
    error: dict[str, Any] | None = None
    last_seq: int = 0
    delivery: dict[str, Any] | None = None


class EventsOut(BaseModel):
    flow_id: str
    events: list[dict[str, Any]]


def problems_body(detail: str, problems: list[dict[str, Any]]) -> dict[str, Any]:
    given = [
        Problem(
            str(p.get("path", "$")), str(p.get("message", "")), "warning" if p.get("severity") == "warning" else "error"
        )
        for p in problems
    ]
    bounded = bound_problems(given, MAX_PROBLEMS_CEILING)
    return Problems(detail=detail, problems=[ProblemOut(**p.as_dict()) for p in bounded]).model_dump()
