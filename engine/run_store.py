"""The run store: what a durable run is, and the one async interface every backend implements.

Contract:
- A run (`RunRecord`) is keyed by `flow_id`: the `/execute` body as received, its owner, the
  Backend 2 URL, the coordinator that owns it, its status and the latest `RunSnapshot`,
  timestamps (Unix seconds), the last event seq stored and the last seq Backend 2 confirmed.
- A checkpoint (`ElementCheckpoint`) is one element's settled state: `completed` (its outputs
  and, for routing elements, the branch ports taken), `failed`, `skipped`, `cancelled`, with
  attempts and timings. A run resumes from its checkpoints without re-running them.
- Events are stored as their JSON text, one row per `(flow_id, seq)`; seqs are contiguous.
- `commit(batch)` writes a `Commit` — events, checkpoints and run updates of any number of
  runs — in one transaction (a group commit: one per outbox flush, never one per token). An
  event counts as produced only once its commit returned. A failed write raises
  `RunStoreError`, never passes silently.
- `create_run` refuses (returns False) a flow id whose run is not finished, or finished but
  another owner's; a finished run of the same owner is replaced (its events and checkpoints
  go with it). `create_runs` does it for several runs at once — one write for all where the
  backend can — answering each as `create_run` would, in order (an id twice: the first wins).
- `list_runs` is newest first (by creation), filtered by owner and status, paginated by an
  opaque cursor (`RunPage.next`, passed back as `before`).
- A run belongs to one coordinator (`coordinator`, set when it is created); `claim_run` moves
  an unfinished run from one coordinator to another only if the first still holds it — the
  fence that keeps two coordinators from ever running one flow when the pool is resized.
- `prune(before)` deletes finished runs that finished before that time, with their events and
  checkpoints, and returns how many runs went; the store does not grow without bound.
Backends: SQLite (the embedded default, a file under `DATA_DIR`), PostgreSQL
(`RUN_STORE_URL=postgresql://…`) and memory (`RUN_STORE=memory`: tests and benchmarks), in
`services.run_store`; all pass the same contract tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.contracts import ElementStateName, ErrorInfo, FlowStatusName, RunSnapshot

FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled", "timed_out"})


class RunStoreError(RuntimeError):
    """The store could not be read or written (disk full, database down, …)."""


@dataclass(frozen=True)
class NewRun:
    flow_id: str
    owner: str
    body: bytes
    backend2_ws_url: str
    coordinator: int
    created_at: float


@dataclass(frozen=True)
class RunRecord:
    flow_id: str
    owner: str
    body: bytes
    backend2_ws_url: str
    coordinator: int
    status: FlowStatusName
    created_at: float
    finished_at: float | None
    snapshot: RunSnapshot | None
    last_seq: int
    delivered_seq: int

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class ElementCheckpoint:
    element_id: str
    state: ElementStateName
    outputs: dict[str, Any] | None = None
    ports: list[str] | None = None  # routing elements: the branches taken (None: every connection)
    attempts: int = 0
    started_at: str | None = None
    duration_ms: float | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True)
class RunUpdate:
    flow_id: str
    status: FlowStatusName
    snapshot: RunSnapshot
    finished_at: float | None = None


@dataclass
class Commit:
    """One group commit. `events` are `(flow_id, seq, JSON text)`, in seq order per flow."""

    events: list[tuple[str, int, str]] = field(default_factory=list)
    checkpoints: list[tuple[str, ElementCheckpoint]] = field(default_factory=list)
    runs: list[RunUpdate] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.events or self.checkpoints or self.runs)


@dataclass(frozen=True)
class RunSummary:
    flow_id: str
    status: FlowStatusName
    created_at: float
    finished_at: float | None
    duration_ms: float | None
    error: ErrorInfo | None
    waiting: list[str] = field(default_factory=list)  # a paused run: the elements it waits at


def run_cursor(run: RunSummary) -> str:
    """The `before` cursor that continues a history page after `run` (newest first)."""
    return f"{run.created_at!r}/{run.flow_id}"


def parse_run_cursor(cursor: str) -> tuple[float, str] | None:
    """`(created_at, flow_id)` of a cursor made by `run_cursor`; None if it is not one."""
    created, _, flow_id = cursor.partition("/")
    try:
        return float(created), flow_id
    except ValueError:
        return None


def newest_first(run: RunSummary) -> tuple[float, str]:
    """The sort key of the history (use with `reverse=True`): creation time, then flow id."""
    return run.created_at, run.flow_id


@dataclass(frozen=True)
class RunPage:
    runs: list[RunSummary]
    next: str | None  # pass as `before` for the next page; None: no more


@dataclass(frozen=True)
class OpenDelivery:
    """A run with events Backend 2 has not confirmed (or whose end it has not confirmed)."""

    flow_id: str
    backend2_ws_url: str
    delivered_seq: int
    last_seq: int
    finished: bool
    coordinator: int  # the coordinator that owns the run (its streamer delivers it)


class RunStore(Protocol):
    async def open(self) -> None:
        """Connect, and create or migrate the schema (idempotent)."""
        ...

    async def close(self) -> None: ...

    async def create_run(self, run: NewRun) -> bool: ...

    async def create_runs(self, runs: list[NewRun]) -> list[bool]: ...

    async def commit(self, batch: Commit) -> None: ...

    async def get_run(self, flow_id: str) -> RunRecord | None: ...

    async def checkpoints(self, flow_id: str) -> list[ElementCheckpoint]: ...

    async def events(self, flow_id: str, after_seq: int = 0, limit: int = 500) -> list[str]:
        """Up to `limit` events after `after_seq`, as their JSON text, in seq order."""
        ...

    async def list_runs(
        self, *, owner: str | None = None, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> RunPage: ...

    async def unfinished_runs(self, coordinator: int | None = None) -> list[RunRecord]:
        """Runs not finished (all, or those of one coordinator), oldest first."""
        ...

    async def open_deliveries(self) -> list[OpenDelivery]: ...

    async def claim_run(self, flow_id: str, holder: int, claimant: int) -> bool:
        """Make coordinator `claimant` the owner of the unfinished run `flow_id` if coordinator
        `holder` owns it now (one atomic write: of two claimants of one run, one wins); whether
        it did."""
        ...

    async def mark_delivered(self, flow_id: str, seq: int) -> None:
        """Backend 2 confirmed every event up to `seq` (never moves backwards)."""
        ...

    async def mark_delivered_many(self, seqs: dict[str, int]) -> None:
        """`mark_delivered` for several flows (flow id → seq) in one write."""
        ...

    async def prune(self, before: float) -> int: ...

    async def row_counts(self) -> dict[str, int]:
        """Rows per table (`runs`, `events`, `checkpoints`): for tests and operators."""
        ...
