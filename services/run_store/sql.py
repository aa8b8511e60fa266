"""`SqlRunStore`: the `RunStore` on SQLAlchemy Core (async), one implementation for every SQL dialect.

Contract: `engine.run_store`'s, on the tables of `schema` (see there) with the dialect's few
differences in `dialects`:
- `open()` makes the engine and applies `migrations` in one write transaction (idempotent; safe
  when several processes open at once); `close()` disposes of the engine. A store not open
  raises `RunStoreError`, and so does every call the database fails (`errors`): nothing passes
  silently, and no message holds a password.
- Every write is one transaction: `create_run` (insert, or replace a finished run of the same
  owner with its events and checkpoints, the existing row locked while deciding), `commit`
  (events inserted with one executemany — an event already stored, from a retried commit, is
  kept as it is —, checkpoints upserted, run updates applied, `last_seq` raised to the highest
  seq committed), `mark_delivered` (only ever raises `delivered_seq`). `prune` deletes in
  transactions of at most `PRUNE_CHUNK` runs, so that writers never wait long for it, then lets
  the dialect reclaim the space.
- Reads: `list_runs` pages newest first (see `paging`); `unfinished_runs` and
  `open_deliveries` oldest first; `checkpoints` by element id; `events` by seq.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import BigInteger, BindParameter, String, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.run_store import (
    FINISHED,
    Commit,
    ElementCheckpoint,
    NewRun,
    OpenDelivery,
    RunPage,
    RunRecord,
    RunStoreError,
)
from services.run_store.codec import checkpoint_of, delivery_of, new_run_row, record_of, summary_of
from services.run_store.dialects import WRITE_OPTION, PostgresDialect, SqlDialect, SqliteDialect
from services.run_store.errors import DRIVER_ERRORS
from services.run_store.migrations import migrate
from services.run_store.paging import cursor_position, make_page, page_limit
from services.run_store.rules import UNFINISHED, may_replace, prepare
from services.run_store.schema import DATA_TABLES, checkpoints, events, runs

PRUNE_CHUNK = 500

_flow: BindParameter[str] = bindparam("b_flow_id", type_=String)
_seq: BindParameter[int] = bindparam("b_seq", type_=BigInteger)
_RAISE_LAST_SEQ = update(runs).where(runs.c.flow_id == _flow, runs.c.last_seq < _seq).values(last_seq=_seq)
_RAISE_DELIVERED = update(runs).where(runs.c.flow_id == _flow, runs.c.delivered_seq < _seq).values(delivered_seq=_seq)
_UPDATE_RUN = (
    update(runs)
    .where(runs.c.flow_id == _flow)
    .values(
        status=bindparam("b_status"),
        snapshot=bindparam("b_snapshot"),
        finished_at=bindparam("b_finished_at"),
        duration_ms=bindparam("b_duration_ms"),
        error=bindparam("b_error"),
    )
)
_SUMMARY_COLUMNS = (
    runs.c.flow_id,
    runs.c.status,
    runs.c.created_at,
    runs.c.finished_at,
    runs.c.duration_ms,
    runs.c.error,
)
_DELIVERY_COLUMNS = (runs.c.flow_id, runs.c.backend2_ws_url, runs.c.delivered_seq, runs.c.last_seq, runs.c.status)
_PRUNABLE = and_(runs.c.status.in_(sorted(FINISHED)), runs.c.finished_at < bindparam("b_before"))  # rules.prunable


class SqlRunStore:
    def __init__(self, dialect: SqlDialect) -> None:
        self._dialect = dialect
        self._engine: AsyncEngine | None = None
        self._opening = asyncio.Lock()
        self._insert_events = dialect.insert_ignore(events, ["flow_id", "seq"])
        self._upsert_checkpoints = dialect.upsert(checkpoints, ["flow_id", "element_id"])
        self._insert_run = dialect.insert_ignore(runs, ["flow_id"])

    @classmethod
    def sqlite(cls, directory: Path, *, busy_timeout: float = 10.0) -> SqlRunStore:
        """The store in `<directory>/runs.sqlite3`."""
        return cls(SqliteDialect(directory, busy_timeout=busy_timeout))

    @classmethod
    def postgres(cls, url: str) -> SqlRunStore:
        """The store in the PostgreSQL database of a `postgresql://` URL."""
        return cls(PostgresDialect(url))

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        async with self._opening:  # a second open() waits for the first to have migrated
            if self._engine is not None:
                return
            self._engine = self._dialect.create_engine()
            try:
                async with self._transaction("open", write=True) as conn:
                    await conn.run_sync(migrate, self._dialect.schema_lock)
            except BaseException:
                engine, self._engine = self._engine, None
                await engine.dispose()
                raise

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    @asynccontextmanager
    async def _transaction(self, op: str, *, write: bool = False) -> AsyncIterator[AsyncConnection]:
        if self._engine is None:
            raise RunStoreError(f"run store: {op} on a store that is not open ({self._dialect.where})")
        try:
            async with self._engine.connect() as conn:
                if write:
                    await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn
        except DRIVER_ERRORS as exc:
            raise self._dialect.error(op, exc) from exc

    # -- writes ------------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> bool:
        row = new_run_row(run)
        async with self._transaction("create_run", write=True) as conn:
            if (await conn.execute(self._insert_run.values(row))).rowcount == 1:
                return True
            existing = (
                await conn.execute(
                    select(runs.c.status, runs.c.owner).where(runs.c.flow_id == run.flow_id).with_for_update()
                )
            ).first()
            if existing is None:  # pruned meanwhile
                return (await conn.execute(self._insert_run.values(row))).rowcount == 1
            if not may_replace(existing.status, existing.owner, run.owner):
                return False
            await conn.execute(delete(events).where(events.c.flow_id == run.flow_id))
            await conn.execute(delete(checkpoints).where(checkpoints.c.flow_id == run.flow_id))
            await conn.execute(update(runs).where(runs.c.flow_id == run.flow_id).values(row))
            return True

    async def commit(self, batch: Commit) -> None:
        if not batch:
            return
        prepared = prepare(batch, time.time())
        async with self._transaction("commit", write=True) as conn:
            if prepared.events:
                await conn.execute(self._insert_events, prepared.events)
            if prepared.checkpoints:
                await conn.execute(self._upsert_checkpoints, prepared.checkpoints)
            if prepared.updates:
                rows = [
                    {"b_flow_id": flow_id} | {f"b_{k}": v for k, v in values.items()}
                    for flow_id, values in prepared.updates
                ]
                await conn.execute(_UPDATE_RUN, rows)
            if prepared.last_seqs:
                await conn.execute(_RAISE_LAST_SEQ, [{"b_flow_id": f, "b_seq": seq} for f, seq in prepared.last_seqs])

    async def mark_delivered(self, flow_id: str, seq: int) -> None:
        async with self._transaction("mark_delivered", write=True) as conn:
            await conn.execute(_RAISE_DELIVERED, {"b_flow_id": flow_id, "b_seq": seq})

    async def prune(self, before: float) -> int:
        pruned = 0
        while True:
            async with self._transaction("prune", write=True) as conn:
                chosen = select(runs.c.flow_id).where(_PRUNABLE).order_by(runs.c.flow_id).limit(PRUNE_CHUNK)
                ids = list((await conn.scalars(chosen.with_for_update(), {"b_before": before})).all())
                if ids:
                    await conn.execute(delete(events).where(events.c.flow_id.in_(ids)))
                    await conn.execute(delete(checkpoints).where(checkpoints.c.flow_id.in_(ids)))
                    await conn.execute(delete(runs).where(runs.c.flow_id.in_(ids)))
            pruned += len(ids)
            if len(ids) < PRUNE_CHUNK:
                break
        if pruned and self._engine is not None:
            await self._dialect.reclaim(self._engine)
        return pruned

    # -- reads -------------------------------------------------------------------------------

    async def get_run(self, flow_id: str) -> RunRecord | None:
        async with self._transaction("get_run") as conn:
            row = (await conn.execute(select(runs).where(runs.c.flow_id == flow_id))).mappings().first()
        return None if row is None else record_of(row)

    async def checkpoints(self, flow_id: str) -> list[ElementCheckpoint]:
        query = select(checkpoints).where(checkpoints.c.flow_id == flow_id).order_by(checkpoints.c.element_id)
        async with self._transaction("checkpoints") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [checkpoint_of(row) for row in rows]

    async def events(self, flow_id: str, after_seq: int = 0, limit: int = 500) -> list[str]:
        if limit <= 0:
            return []
        query = (
            select(events.c.payload)
            .where(events.c.flow_id == flow_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self._transaction("events") as conn:
            return [str(payload) for payload in (await conn.scalars(query)).all()]

    async def list_runs(
        self, *, owner: str | None = None, status: str | None = None, limit: int = 50, before: str | None = None
    ) -> RunPage:
        size = page_limit(limit)
        query = select(*_SUMMARY_COLUMNS).order_by(runs.c.created_at.desc(), runs.c.flow_id.desc()).limit(size + 1)
        if owner is not None:
            query = query.where(runs.c.owner == owner)
        if status is not None:
            query = query.where(runs.c.status == status)
        if before is not None:
            position = cursor_position(before)
            if position is None:
                return RunPage(runs=[], next=None)
            created_at, flow_id = position
            query = query.where(
                or_(runs.c.created_at < created_at, and_(runs.c.created_at == created_at, runs.c.flow_id < flow_id))
            )
        async with self._transaction("list_runs") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return make_page([summary_of(row) for row in rows], size)

    async def unfinished_runs(self, coordinator: int | None = None) -> list[RunRecord]:
        query = select(runs).where(runs.c.status.in_(UNFINISHED)).order_by(runs.c.created_at, runs.c.flow_id)
        if coordinator is not None:
            query = query.where(runs.c.coordinator == coordinator)
        async with self._transaction("unfinished_runs") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [record_of(row) for row in rows]

    async def open_deliveries(self) -> list[OpenDelivery]:
        query = (
            select(*_DELIVERY_COLUMNS)
            .where(or_(runs.c.delivered_seq < runs.c.last_seq, runs.c.status.in_(UNFINISHED)))
            .order_by(runs.c.created_at, runs.c.flow_id)
        )
        async with self._transaction("open_deliveries") as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [delivery_of(row) for row in rows]

    async def row_counts(self) -> dict[str, int]:
        async with self._transaction("row_counts") as conn:
            return {
                table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in DATA_TABLES
            }
