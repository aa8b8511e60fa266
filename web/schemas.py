"""Response bodies of the HTTP API, as pydantic models so `/docs` shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


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
    return Problems(detail=detail, problems=[ProblemOut(**p) for p in problems]).model_dump()
