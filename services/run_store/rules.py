"""The contract's decisions that every backend shares, so that each makes them the same way.

Contract:
- `UNFINISHED`: the statuses of a run that is not finished (every `FlowStatusName` outside
  `engine.run_store.FINISHED`).
- `may_replace`: `create_run` replaces an existing run only when that run is finished and of
  the same owner.
- `prunable`: `prune(before)` deletes a run only when it is finished and finished before then.
- `prepare(batch, now)`: a `Commit` as the rows one transaction writes — every event (the
  batch's `(flow_id, seq, payload)` tuples, which the transaction only reads); the last
  checkpoint given per `(flow_id, element_id)` and the last update given per run (a later one
  in the same batch wins, as it would in two commits). Checkpoints and updates come in key
  order, so that concurrent writers lock rows in one order; events in the batch's order.
  (A run's `last_seq` is the highest seq of its events: nothing to prepare for it.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from engine.contracts import FlowStatusName
from engine.run_store import FINISHED, Commit
from services.run_store.codec import Row, checkpoint_row, update_values

UNFINISHED: tuple[str, ...] = tuple(sorted(set(get_args(FlowStatusName)) - FINISHED))


def may_replace(status: str, owner: str, new_owner: str) -> bool:
    return status in FINISHED and owner == new_owner


def prunable(status: str, finished_at: float | None, before: float) -> bool:
    return status in FINISHED and finished_at is not None and finished_at < before


@dataclass(frozen=True)
class PreparedCommit:
    events: list[tuple[str, int, str]]  # flow_id, seq, payload: the batch's, as given
    checkpoints: list[Row]  # rows of the checkpoints table
    updates: list[tuple[str, Row]]  # flow id, columns its update sets


def prepare(batch: Commit, now: float) -> PreparedCommit:
    checkpoints = {(flow_id, cp.element_id): checkpoint_row(flow_id, cp) for flow_id, cp in batch.checkpoints}
    updates = {update.flow_id: update_values(update, now) for update in batch.runs}
    return PreparedCommit(
        events=batch.events,
        checkpoints=[checkpoints[key] for key in sorted(checkpoints)],
        updates=sorted(updates.items()),
    )
