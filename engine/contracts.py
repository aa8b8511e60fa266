"""The shapes that cross module, actor and HTTP boundaries, each defined once.

Contract: these are `TypedDict`s — plain dicts at run time (cheap to build, to send between
actors and to encode), checked by the type checker where they are built and read, and turned
into JSON Schema for the OpenAPI document by pydantic. The scheduler builds `RunSnapshot` and
every event's `data`; the coordinator builds `SubmitOutcome` and `CancelOutcome` and the
snapshot of a flow it had to abandon; `web.schemas` and `serve_app` answer with them.

- `RunSnapshot`: a run's status — `status`, timestamps, `elements` (each `ElementSnapshot`:
  state, attempts, timing, error), the flow's `outputs`, its `error`, `last_seq`.
- Event data, one type per event (`EventData`, keyed by the event's `type` in `EVENT_DATA`).
- `SubmitOutcome`: `started` (with validation warnings), `conflict`, or `invalid` (problems).
- `CancelOutcome`: `unknown`, `not_running` (with the snapshot), or `cancelled` (snapshot).
- `ResumeOutcome` (a paused run): `unknown`, `conflict` (why not), `invalid` (problems), `resumed`.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

FlowStatusName = Literal["pending", "running", "paused", "completed", "failed", "cancelled", "timed_out"]
ElementStateName = Literal[
    "pending", "running", "waiting", "completed", "failed", "skipped", "cancelled", "unreachable", "not_run"
]


class ErrorInfo(TypedDict):
    """Why an element or a flow did not complete: a stable snake_case type and a plain message."""

    error_type: str
    message: str
    element_id: NotRequired[str]  # a flow's error: the element whose failure failed it


class ProblemInfo(TypedDict):
    """One validation problem: where (a JSON path), what, and whether it stops the flow."""

    path: str
    message: str
    severity: Literal["error", "warning"]


class ElementSnapshot(TypedDict):
    type: str
    state: ElementStateName
    started_at: str | None
    duration_ms: float | None
    attempts: int
    error: ErrorInfo | None


class WaitingInfo(TypedDict):
    """An element a paused run waits at: what to show, what a resume must supply, and where."""

    element_id: str
    prompt: str
    input_schema: dict[str, Any]
    resume_path: str
    wake_at: float | None  # Unix seconds when the wait times out; None: it never does


class RunSnapshot(TypedDict):
    flow_id: str
    status: FlowStatusName
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    elements: dict[str, ElementSnapshot]
    outputs: dict[str, Any]
    error: ErrorInfo | None
    last_seq: int
    waiting: NotRequired[list[WaitingInfo]]  # a paused run: the elements it waits at
    rerun_of: NotRequired[str]  # a re-run: the flow id of the run it re-uses results from


# -- event data, one per event type ---------------------------------------------------------


class FlowStartedData(TypedDict):
    start_element_id: str
    elements: int


class ElementStartedData(TypedDict):
    type: str
    name: str
    inputs: dict[str, Any]
    resumed: NotRequired[bool]  # True: started again by a resumed run (it was running when its process stopped)


class LlmChunkData(TypedDict):
    chunk: str
    index: int


class ElementCompletedData(TypedDict):
    outputs: dict[str, Any]
    duration_ms: float | None
    cached: NotRequired[bool]  # True: a re-run took this result from the original run (no work done)


class ElementErrorData(TypedDict):
    error_type: str
    message: str
    attempts: int
    duration_ms: float | None


class ElementSkippedData(TypedDict):
    reason: str


class FlowCompletedData(TypedDict):
    status: FlowStatusName
    outputs: dict[str, Any]
    error: ErrorInfo | None
    duration_ms: float | None


class FlowPausedData(WaitingInfo):
    pass


class FlowResumedData(TypedDict):
    element_id: str
    inputs: dict[str, Any]


EventData = (
    FlowStartedData
    | ElementStartedData
    | LlmChunkData
    | ElementCompletedData
    | ElementErrorData
    | ElementSkippedData
    | FlowPausedData
    | FlowResumedData
    | FlowCompletedData
)

EVENT_DATA: dict[str, type[Any]] = {
    "flow_started": FlowStartedData,
    "element_started": ElementStartedData,
    "llm_chunk": LlmChunkData,
    "element_completed": ElementCompletedData,
    "element_error": ElementErrorData,
    "element_skipped": ElementSkippedData,
    "flow_paused": FlowPausedData,
    "flow_resumed": FlowResumedData,
    "flow_completed": FlowCompletedData,
}


class ScopeEntry(TypedDict):
    """One level of where an event's element runs: the element holding the sub-flow and which
    run of it (the item's index in an `iteration`, the round of a `loop`, 0 for a `sub_flow`)."""

    element_id: str
    index: int


class EventMessage(TypedDict):
    """The envelope as it travels to Backend 2 and the events API (`element_id` only when set,
    `scope` only inside sub-flows)."""

    type: str
    flow_id: str
    seq: int
    timestamp: str
    element_id: NotRequired[str]
    data: dict[str, Any]
    scope: NotRequired[list[ScopeEntry]]


# -- coordinator answers ----------------------------------------------------------------------


class Started(TypedDict):
    outcome: Literal["started"]
    flow_id: str
    warnings: list[ProblemInfo]


class Conflict(TypedDict):
    outcome: Literal["conflict"]
    flow_id: str


class Invalid(TypedDict):
    outcome: Literal["invalid"]
    problems: list[ProblemInfo]


SubmitOutcome = Started | Conflict | Invalid


class UnknownFlow(TypedDict):
    outcome: Literal["unknown"]


class NotRunning(TypedDict):
    outcome: Literal["not_running"]
    snapshot: RunSnapshot


class Cancelled(TypedDict):
    outcome: Literal["cancelled"]
    snapshot: RunSnapshot


CancelOutcome = UnknownFlow | NotRunning | Cancelled


class NotPaused(TypedDict):
    outcome: Literal["conflict"]
    message: str


class Resumed(TypedDict):
    outcome: Literal["resumed"]
    flow_id: str


ResumeOutcome = UnknownFlow | NotPaused | Invalid | Resumed
