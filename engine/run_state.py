"""The state of one flow run: its status, each element's record, and what a run resumes from.

Contract:
- `ElementRecord` is the scheduler's record of one element: state, attempts, timing, error.
  It is shown as an `ElementSnapshot` (`as_dict`) and kept durably as an `ElementCheckpoint`
  (`checkpoint`), from which `restore` sets it back after a restart.
- `Resume` is what a run that a stopped process left unfinished picks up from: the checkpoints
  stored for it (the last one of each element counts) and the seq of its last stored event;
  for a paused run, the answer a resume brings to a waiting element (`answers`) or the waits
  that timed out (`expired`); for a re-run, `cached` (restored results are reported, not silent).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.contracts import ElementSnapshot, ErrorInfo
from engine.element import ElementResult
from engine.run_store import ElementCheckpoint


class FlowStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class ElementState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNREACHABLE = "unreachable"
    NOT_RUN = "not_run"


@dataclass
class ElementRecord:
    element_id: str
    type: str
    state: ElementState = ElementState.PENDING
    started_at: str | None = None
    duration_ms: float | None = None
    attempts: int = 0
    error: ErrorInfo | None = None
    key: str = ""  # its checkpoints' key: the element id, or inside a sub-flow the scoped key (engine.nesting)

    def as_dict(self) -> ElementSnapshot:
        return {
            "type": self.type,
            "state": self.state.value,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "error": self.error,
        }

    def checkpoint(self, result: ElementResult | None = None, attempts: int | None = None) -> ElementCheckpoint:
        """The record as a checkpoint; `result`: a completed element's outputs and ports taken;
        `attempts`: the attempt it is at, when not yet counted in the record."""
        ports = None if result is None or result.ports is None else sorted(result.ports)
        return ElementCheckpoint(
            element_id=self.key or self.element_id,
            state=self.state.value,
            outputs=None if result is None else result.outputs,
            ports=ports,
            attempts=self.attempts if attempts is None else attempts,
            started_at=self.started_at,
            duration_ms=self.duration_ms,
            error=self.error,
        )

    def restore(self, checkpoint: ElementCheckpoint) -> None:
        self.state = ElementState(checkpoint.state)
        self.attempts = checkpoint.attempts
        self.started_at = checkpoint.started_at
        self.duration_ms = checkpoint.duration_ms
        self.error = checkpoint.error


@dataclass(frozen=True)
class Resume:
    """How a `FlowRun` continues a run whose process stopped before `flow_completed`.

    `checkpoints`: those stored for the run, oldest first (only the last of each element
    counts); `last_seq`: the seq of its last stored event (the run goes on from `last_seq + 1`;
    0: nothing was stored, so `flow_started` is still to come); `started_at`: when the run first
    started, kept in its snapshot (None: the time of the resume). A `waiting` checkpoint holds
    the wait's `prompt` and `wake_at` as its outputs; the element completes with its entry of
    `answers`, fails `timed_out` when in `expired`, and otherwise waits again, silently.
    """

    checkpoints: Sequence[ElementCheckpoint] = ()
    last_seq: int = 0
    started_at: str | None = None
    answers: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # waiting element → its outputs
    expired: frozenset[str] = frozenset()  # waiting elements whose `timeout` passed
    cached: bool = False  # a re-run: each restored element reports `element_completed` with `cached: true`
    rerun_of: str | None = None  # a re-run: the flow id whose results it re-uses (shown in the snapshot)

    def __post_init__(self) -> None:
        if self.last_seq < 0:
            raise ValueError(f"last_seq must be 0 or more, got {self.last_seq}")

    def latest(self) -> dict[str, ElementCheckpoint]:
        """The last checkpoint of each element, by element id."""
        return {checkpoint.element_id: checkpoint for checkpoint in self.checkpoints}
