"""The contract's decisions that every backend shares, so that each makes them the same way.

Contract:
- `UNFINISHED`: the statuses of a run that is not finished (every `FlowStatusName` outside
  `engine.run_store.FINISHED`).
- `may_replace`: `create_run` replaces an existing run only when that run is finished and of
  the same owner.
- `prunable`: `prune(before)` deletes a run only when it is finished and finished before then.
- `prepare(batch, now)`: a `Commit` as the rows one transaction writes — every event; the last
  checkpoint given per `(flow_id, element_id)` and the last update given per run (a later one
  in the same batch wins, as it would in two commits); and, per run with events, the highest
  seq, which raises the run's `last_seq` (never lowers it). Rows come in key order, so that
  concurrent writers lock rows in one order.
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
    events: list[Row]  # flow_id, seq, payload
    checkpoints: list[Row]  # rows of the checkpoints table
    updates: list[tuple[str, Row]]  # flow id, columns its update sets
    last_seqs: list[tuple[str, int]]  # flow id, highest seq of its events in the batch


def prepare(batch: Commit, now: float) -> PreparedCommit:
    checkpoints = {(flow_id, cp.element_id): checkpoint_row(flow_id, cp) for flow_id, cp in batch.checkpoints}
    updates = {update.flow_id: update_values(update, now) for update in batch.runs}
    last_seqs: dict[str, int] = {}
    for flow_id, seq, _ in batch.events:
        last_seqs[flow_id] = max(seq, last_seqs.get(flow_id, seq))
    return PreparedCommit(
        events=[{"flow_id": flow_id, "seq": seq, "payload": payload} for flow_id, seq, payload in batch.events],
        checkpoints=[checkpoints[key] for key in sorted(checkpoints)],
        updates=sorted(updates.items()),
        last_seqs=sorted(last_seqs.items()),
    )
