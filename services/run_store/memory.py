"""`MemoryRunStore`: the `RunStore` in this process's memory (`RUN_STORE=memory`: tests, benchmarks).

Contract: `engine.run_store`'s, with nothing durable — the data lives as long as the object
(`close()` then `open()` keeps it; a new object starts empty). It keeps the same rows as the
SQL store (`codec`), decides the same way (`rules`, `paging`) and so answers the same: JSON
values are stored as text (a record read back never aliases one written), orders and ties are
the same, a call on a store that is not open raises `RunStoreError`. No call awaits anything,
so each is atomic with respect to other tasks. Nothing is ever written to disk.
"""

from __future__ import annotations

import bisect
import time

from engine.run_store import Commit, ElementCheckpoint, NewRun, OpenDelivery, RunPage, RunRecord, RunStoreError
from services.run_store.codec import Row, checkpoint_of, delivery_of, new_run_row, record_of, summary_of
from services.run_store.paging import cursor_position, in_listing_order, make_page, page_limit
from services.run_store.rules import UNFINISHED, may_replace, prepare, prunable


class _Events:
    """One run's events: payload by seq, and the seqs in order."""

    def __init__(self) -> None:
        self.payloads: dict[int, str] = {}
        self.seqs: list[int] = []

    def add(self, seq: int, payload: str) -> None:
        if seq in self.payloads:  # a retried commit: the stored event stays
            return
        self.payloads[seq] = payload
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)
        else:
            bisect.insort(self.seqs, seq)

    def after(self, after_seq: int, limit: int) -> list[str]:
        start = bisect.bisect_right(self.seqs, after_seq)
        return [self.payloads[seq] for seq in self.seqs[start : start + limit]]


class MemoryRunStore:
    def __init__(self) -> None:
        self._open = False
        self._runs: dict[str, Row] = {}
        self._events: dict[str, _Events] = {}
        self._checkpoints: dict[str, dict[str, Row]] = {}
        self._delivered: dict[str, int] = {}

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

    def _check(self, op: str) -> None:
        if not self._open:
            raise RunStoreError(f"run store: {op} on a store that is not open (memory)")

    # -- writes ------------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> bool:
        self._check("create_run")
        existing = self._runs.get(run.flow_id)
        if existing is not None and not may_replace(existing["status"], existing["owner"], run.owner):
            return False
        self._runs[run.flow_id] = new_run_row(run)
        self._delivered[run.flow_id] = 0
        self._events.pop(run.flow_id, None)
        self._checkpoints.pop(run.flow_id, None)
        return True

    async def create_runs(self, runs: list[NewRun]) -> list[bool]:
        return [await self.create_run(run) for run in runs]

    async def commit(self, batch: Commit) -> None:
        self._check("commit")
        if not batch:
            return
        prepared = prepare(batch, time.time())
        for flow_id, seq, payload in prepared.events:
            self._events.setdefault(flow_id, _Events()).add(seq, payload)
        for row in prepared.checkpoints:
            self._checkpoints.setdefault(row["flow_id"], {})[row["element_id"]] = row
        for flow_id, values in prepared.updates:
            if (run := self._runs.get(flow_id)) is not None:
                run.update(values)

    async def mark_delivered(self, flow_id: str, seq: int) -> None:
        await self.mark_delivered_many({flow_id: seq})

    async def mark_delivered_many(self, seqs: dict[str, int]) -> None:
        self._check("mark_delivered")
        for flow_id, seq in seqs.items():
            if flow_id in self._delivered:
                self._delivered[flow_id] = max(self._delivered[flow_id], seq)

    async def claim_run(self, flow_id: str, holder: int, claimant: int) -> bool:
        self._check("claim_run")
        run = self._runs.get(flow_id)
        if run is None or run["coordinator"] != holder or run["status"] not in UNFINISHED:
            return False
        run["coordinator"] = claimant
        return True

    async def prune(self, before: float) -> int:
        self._check("prune")
        gone = [flow_id for flow_id, run in self._runs.items() if prunable(run["status"], run["finished_at"], before)]
        for flow_id in gone:
            del self._runs[flow_id]
            self._delivered.pop(flow_id, None)
            self._events.pop(flow_id, None)
            self._checkpoints.pop(flow_id, None)
        return len(gone)

    # -- reads -------------------------------------------------------------------------------

    async def get_run(self, flow_id: str) -> RunRecord | None:
        self._check("get_run")
        return None if flow_id not in self._runs else record_of(self._with_seqs(flow_id))

    async def checkpoints(self, flow_id: str) -> list[ElementCheckpoint]:
        self._check("checkpoints")
        rows = self._checkpoints.get(flow_id, {})
        return [checkpoint_of(rows[element_id]) for element_id in sorted(rows)]

    async def events(self, flow_id: str, after_seq: int = 0, limit: int = 500) -> list[str]:
        self._check("events")
        stored = self._events.get(flow_id)
        return [] if stored is None or limit <= 0 else stored.after(after_seq, limit)

    async def list_runs(
        self, *, owner: str | None = None, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> RunPage:
        self._check("list_runs")
        size = page_limit(limit)
        position = None if before is None else cursor_position(before)
        if before is not None and position is None:
            return RunPage(runs=[], next=None)
        summaries = in_listing_order(
            summary_of(run)
            for run in self._runs.values()
            if (owner is None or run["owner"] == owner)
            and (status is None or run["status"] == status)
            and (position is None or (run["created_at"], run["flow_id"]) < position)
        )
        return make_page(summaries[: size + 1], size)

    async def unfinished_runs(self, coordinator: int | None = None) -> list[RunRecord]:
        self._check("unfinished_runs")
        rows = [
            self._with_seqs(flow_id)
            for flow_id, run in self._runs.items()
            if run["status"] in UNFINISHED and (coordinator is None or run["coordinator"] == coordinator)
        ]
        return [record_of(row) for row in sorted(rows, key=_oldest_first)]

    async def open_deliveries(self) -> list[OpenDelivery]:
        self._check("open_deliveries")
        rows = [self._with_seqs(flow_id) for flow_id in self._runs]
        rows = [row for row in rows if row["delivered_seq"] < row["last_seq"] or row["status"] in UNFINISHED]
        return [delivery_of(row) for row in sorted(rows, key=_oldest_first)]

    def _with_seqs(self, flow_id: str) -> Row:
        """The run's row with its last seq (the highest of its events) and delivered seq."""
        stored = self._events.get(flow_id)
        last_seq = stored.seqs[-1] if stored is not None and stored.seqs else 0
        return self._runs[flow_id] | {"last_seq": last_seq, "delivered_seq": self._delivered.get(flow_id, 0)}

    async def row_counts(self) -> dict[str, int]:
        self._check("row_counts")
        return {
            "runs": len(self._runs),
            "events": sum(len(stored.seqs) for stored in self._events.values()),
            "checkpoints": sum(len(rows) for rows in self._checkpoints.values()),
        }


def _oldest_first(run: Row) -> tuple[float, str]:
    return (float(run["created_at"]), str(run["flow_id"]))
