"""`SqlRunStore`: the `RunStore` on SQLAlchemy Core (async), one implementation for every SQL dialect.

Contract: `engine.run_store`'s, on the tables of `schema` (see there) with the dialect's few
differences in `dialects`:
- `open()` has the dialect `prepare` the database, makes the engine and applies `migrations` in
  one write transaction (idempotent; safe when several processes open at once); `close()` disposes of the engine. A store not open
  raises `RunStoreError`, and so does every call the database fails (`errors`): nothing passes
  silently, and no message holds a password.
- The hot writes — `commit` (one per outbox flush), `mark_delivered_many` (the streamer's
  confirmations of every flow confirmed meanwhile; `mark_delivered` for one) and `create_runs`
  (the new runs of a batch of submissions; `create_run` for one) — go through the dialect's `writes` on one connection this store takes from its
  pool at its first such write and holds (one at a time: a lock), each as one hand-off to the
  driver: a commit writes its events (an event already stored, from a retried
  commit, is kept as it is), checkpoints (upserted) and run updates in one transaction, and
  nothing else — a commit of events alone never writes the `runs` row; `mark_delivered` only
  ever raises `deliveries.delivered_seq`. Every `checkpoint_every` hot writes, the dialect's
  `checkpoint` runs in a task of its own.
- Every other write is one transaction on SQLAlchemy: `create_run` of a flow id already taken
  (replace a finished run of the same owner with its events and checkpoints, the existing row
  locked while deciding; else refuse). `prune` deletes in transactions of at most
  `PRUNE_CHUNK` runs, so that writers never wait long for it, then lets the dialect reclaim
  the space.
- A connection found gone (the server restarted) costs one reconnect, not an error: the held
  connection is replaced when `writes.lost` reports it gone before use, and a hot write whose
  connection turns out gone during it is retried once on a new one (the new run's insert is
  not: replayed, it would refuse the run it created); a SQLAlchemy call that fails with a
  disconnect (`DBAPIError.connection_invalidated`) is retried once — `create_run` only when
  the failure came before its COMMIT was sent. No connection is pinged before use, except
  the next held one after a loss.
- Reads: a run's `last_seq` is the highest seq of its events (an index lookup), its
  `delivered_seq` from `deliveries`. `list_runs` pages newest first (see `paging`);
  `unfinished_runs` and `open_deliveries` oldest first; `checkpoints` by element id; `events`
  by seq.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.exc import DBAPIError
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
from services.run_store.schema import DATA_TABLES, checkpoints, deliveries, events, runs

log = logging.getLogger(__name__)

PRUNE_CHUNK = 500
_STALE_CONNECTIONS = 16  # connections found gone that one hot write discards before it gives up

_LAST_SEQ = func.coalesce(
    select(events.c.seq)
    .where(events.c.flow_id == runs.c.flow_id)
    .order_by(events.c.seq.desc())
    .limit(1)
    .scalar_subquery(),
    0,
).label("last_seq")
_DELIVERED_SEQ = func.coalesce(deliveries.c.delivered_seq, 0).label("delivered_seq")
_RUNS_WITH_DELIVERIES = runs.outerjoin(deliveries, deliveries.c.flow_id == runs.c.flow_id)
_SUMMARY_COLUMNS = (
    runs.c.flow_id,
    runs.c.status,
    runs.c.created_at,
    runs.c.finished_at,
    runs.c.duration_ms,
    runs.c.error,
    case((runs.c.status == "paused", runs.c.snapshot), else_=None).label("snapshot"),  # paused runs only
)
# Every column of a run, with its last and delivered seqs (`codec.record_of`).
_RECORDS = select(*runs.c, _DELIVERED_SEQ, _LAST_SEQ).select_from(_RUNS_WITH_DELIVERIES)
_DELIVERIES = (
    select(
        runs.c.flow_id,
        runs.c.backend2_ws_url,
        runs.c.status,
        runs.c.created_at,
        runs.c.coordinator,
        _DELIVERED_SEQ,
        _LAST_SEQ,
    )
    .select_from(_RUNS_WITH_DELIVERIES)
    .subquery()
)
_OPEN_DELIVERIES = (
    select(_DELIVERIES)
    .where(or_(_DELIVERIES.c.status.in_(UNFINISHED), _DELIVERIES.c.delivered_seq < _DELIVERIES.c.last_seq))
    .order_by(_DELIVERIES.c.created_at, _DELIVERIES.c.flow_id)
)


class SqlRunStore:
    def __init__(self, dialect: SqlDialect) -> None:
        self._dialect = dialect
        self._writes = dialect.writes()
        self._engine: AsyncEngine | None = None
        self._opening = asyncio.Lock()
        self._writing = asyncio.Lock()  # the held connection serves one hot write at a time
        self._held: AsyncConnection | None = None
        self._driver: Any = None  # the held connection's driver connection
        self._hot_writes = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._insert_run = dialect.insert_ignore(runs, ["flow_id"])
        self._reset_delivery = dialect.upsert(deliveries, ["flow_id"])

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
            await self._dialect.prepare()
            self._engine = self._dialect.create_engine()
            try:
                await self._run("open", lambda conn: conn.run_sync(migrate, self._dialect.schema_lock), write=True)
            except BaseException:
                engine, self._engine = self._engine, None
                await engine.dispose()
                raise

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if self._checkpointing is not None:
            await self._checkpointing
        await self._release()
        if engine is not None:
            await engine.dispose()

    def _open_engine(self, op: str) -> AsyncEngine:
        if self._engine is None:
            raise RunStoreError(f"run store: {op} on a store that is not open ({self._dialect.where})")
        return self._engine

    async def _run[T](
        self,
        op: str,
        work: Callable[[AsyncConnection], Awaitable[T]],
        *,
        write: bool = False,
        replayable: bool = True,
    ) -> T:
        """`work` in one transaction on a pooled connection; retried once on a connection found
        gone (unless the transaction had reached its COMMIT and is not `replayable`)."""
        retried = False
        while True:
            engine = self._open_engine(op)
            committing = False
            try:
                async with engine.connect() as conn:
                    if write:
                        await conn.execution_options(**{WRITE_OPTION: True})
                    async with conn.begin():
                        result = await work(conn)
                        committing = True
                return result
            except DBAPIError as exc:
                if not retried and exc.connection_invalidated and (replayable or not committing):
                    retried = True
                    continue
                raise self._dialect.error(op, exc) from exc
            except DRIVER_ERRORS as exc:
                raise self._dialect.error(op, exc) from exc

    # -- hot writes --------------------------------------------------------------------------

    async def _hot_write[T](self, op: str, work: Callable[[Any], Awaitable[T]], *, replayable: bool = True) -> T:
        """`work` on the held connection's driver connection (taken from the pool if none is
        held). A held connection found gone before use is replaced; one that turns out gone
        during `work` is replaced and `work` retried once, if `replayable`."""
        async with self._writing:
            retried = False
            while True:
                engine = self._open_engine(op)
                check = retried
                if self._driver is not None and self._writes.lost(self._driver):
                    await self._release()  # found gone (the server went away): its pool mates may be too
                    check = True
                try:
                    driver = self._driver if self._driver is not None else await self._hold(engine, check=check)
                    result = await work(driver)
                except DRIVER_ERRORS as exc:
                    lost = self._driver is not None and self._writes.lost(self._driver, exc)
                    if lost:
                        await self._release()
                    if lost and replayable and not retried:
                        retried = True
                        continue
                    raise self._dialect.error(op, exc) from exc
                except BaseException:
                    await self._release()  # interrupted (cancelled): what the connection is doing is unknown
                    raise
                break
        self._hot_writes += 1
        every = self._dialect.checkpoint_every
        if every is not None and self._hot_writes >= every and self._checkpointing is None:
            self._hot_writes = 0
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())
        return result

    async def _hold(self, engine: AsyncEngine, *, check: bool) -> Any:
        """A connection of the pool for the hot writes: its driver connection. Connections found
        gone are discarded; with `check` (one was just lost: the pool may hold others from
        before) each is first tried with a round trip."""
        for _ in range(_STALE_CONNECTIONS):
            conn = await engine.connect()
            driver = None
            try:
                driver = (await conn.get_raw_connection()).driver_connection
                if driver is not None and not self._writes.lost(driver):
                    await self._writes.hold(driver, check=check)
                    self._held, self._driver = conn, driver
                    return driver
            except DRIVER_ERRORS as exc:
                if driver is None or not self._writes.lost(driver, exc):
                    await _discard(conn)
                    raise
            except BaseException:
                await _discard(conn)
                raise
            await _discard(conn)
        raise RunStoreError(f"run store: no live connection to {self._dialect.where}")

    async def _release(self) -> None:
        held, self._held, self._driver = self._held, None, None
        if held is not None:
            await _discard(held)

    async def _checkpoint(self) -> None:
        try:
            await self._dialect.checkpoint()
        except RunStoreError as exc:
            log.warning("%s", exc)
        finally:
            self._checkpointing = None

    async def commit(self, batch: Commit) -> None:
        if not batch:
            self._open_engine("commit")
            return
        prepared = prepare(batch, time.time())
        await self._hot_write("commit", lambda driver: self._writes.commit(driver, prepared))

    async def mark_delivered(self, flow_id: str, seq: int) -> None:
        await self.mark_delivered_many({flow_id: seq})

    async def mark_delivered_many(self, seqs: dict[str, int]) -> None:
        if seqs:
            pairs = list(seqs.items())
            await self._hot_write("mark_delivered", lambda driver: self._writes.mark_delivered(driver, pairs))

    # -- other writes ------------------------------------------------------------------------

    async def create_run(self, run: NewRun) -> bool:
        return (await self.create_runs([run]))[0]

    async def create_runs(self, new_runs: list[NewRun]) -> list[bool]:
        """The new runs inserted in one hot write; an id found taken is then decided alone."""
        if not new_runs:
            return []
        rows = [new_run_row(run) for run in new_runs]
        inserted = await self._hot_write(
            "create_run", lambda driver: self._writes.insert_runs(driver, rows), replayable=False
        )
        return [done or await self._replace_finished(run) for run, done in zip(new_runs, inserted, strict=True)]

    async def _replace_finished(self, run: NewRun) -> bool:
        """A run whose flow id is taken: it replaces a finished run of its owner, else False."""
        row = new_run_row(run)

        async def taken(conn: AsyncConnection) -> bool:
            """The flow id is taken: replace its run if finished and of the same owner."""
            existing = (
                await conn.execute(
                    select(runs.c.status, runs.c.owner).where(runs.c.flow_id == run.flow_id).with_for_update()
                )
            ).first()
            if existing is None:  # pruned meanwhile
                if (await conn.execute(self._insert_run.values(row))).rowcount != 1:
                    return False
            elif not may_replace(existing.status, existing.owner, run.owner):
                return False
            else:
                await conn.execute(delete(events).where(events.c.flow_id == run.flow_id))
                await conn.execute(delete(checkpoints).where(checkpoints.c.flow_id == run.flow_id))
                await conn.execute(update(runs).where(runs.c.flow_id == run.flow_id).values(row))
            await conn.execute(self._reset_delivery.values(flow_id=run.flow_id, delivered_seq=0))
            return True

        return await self._run("create_run", taken, write=True, replayable=False)

    async def claim_run(self, flow_id: str, holder: int, claimant: int) -> bool:
        claim = (
            update(runs)
            .where(runs.c.flow_id == flow_id, runs.c.coordinator == holder, runs.c.status.in_(UNFINISHED))
            .values(coordinator=claimant)
        )

        async def work(conn: AsyncConnection) -> bool:
            return bool((await conn.execute(claim)).rowcount == 1)

        return await self._run("claim_run", work, write=True)

    async def prune(self, before: float) -> int:
        chosen = (
            select(runs.c.flow_id)
            .where(runs.c.status.in_(sorted(FINISHED)), runs.c.finished_at < before)
            .order_by(runs.c.flow_id)
            .limit(PRUNE_CHUNK)
            .with_for_update()
        )

        async def work(conn: AsyncConnection) -> int:
            ids = list((await conn.scalars(chosen)).all())
            if ids:
                for table in (events, checkpoints, deliveries, runs):
                    await conn.execute(delete(table).where(table.c.flow_id.in_(ids)))
            return len(ids)

        pruned = 0
        while True:
            count = await self._run("prune", work, write=True)
            pruned += count
            if count < PRUNE_CHUNK:
                break
        if pruned and self._engine is not None:
            await self._dialect.reclaim(self._engine)
        return pruned

    # -- reads -------------------------------------------------------------------------------

    async def get_run(self, flow_id: str) -> RunRecord | None:
        query = _RECORDS.where(runs.c.flow_id == flow_id)

        async def work(conn: AsyncConnection) -> RunRecord | None:
            row = (await conn.execute(query)).mappings().first()
            return None if row is None else record_of(row)

        return await self._run("get_run", work)

    async def checkpoints(self, flow_id: str) -> list[ElementCheckpoint]:
        query = select(checkpoints).where(checkpoints.c.flow_id == flow_id).order_by(checkpoints.c.element_id)

        async def work(conn: AsyncConnection) -> list[ElementCheckpoint]:
            return [checkpoint_of(row) for row in (await conn.execute(query)).mappings().all()]

        return await self._run("checkpoints", work)

    async def events(self, flow_id: str, after_seq: int = 0, limit: int = 500) -> list[str]:
        if limit <= 0:
            return []
        query = (
            select(events.c.payload)
            .where(events.c.flow_id == flow_id, events.c.seq > after_seq)
            .order_by(events.c.seq)
            .limit(limit)
        )

        async def work(conn: AsyncConnection) -> list[str]:
            return [str(payload) for payload in (await conn.scalars(query)).all()]

        return await self._run("events", work)

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

        async def work(conn: AsyncConnection) -> RunPage:
            rows = (await conn.execute(query)).mappings().all()
            return make_page([summary_of(row) for row in rows], size)

        return await self._run("list_runs", work)

    async def unfinished_runs(self, coordinator: int | None = None) -> list[RunRecord]:
        query = _RECORDS.where(runs.c.status.in_(UNFINISHED)).order_by(runs.c.created_at, runs.c.flow_id)
        if coordinator is not None:
            query = query.where(runs.c.coordinator == coordinator)

        async def work(conn: AsyncConnection) -> list[RunRecord]:
            return [record_of(row) for row in (await conn.execute(query)).mappings().all()]

        return await self._run("unfinished_runs", work)

    async def open_deliveries(self) -> list[OpenDelivery]:
        async def work(conn: AsyncConnection) -> list[OpenDelivery]:
            return [delivery_of(row) for row in (await conn.execute(_OPEN_DELIVERIES)).mappings().all()]

        return await self._run("open_deliveries", work)

    async def row_counts(self) -> dict[str, int]:
        async def work(conn: AsyncConnection) -> dict[str, int]:
            return {
                table.name: int(await conn.scalar(select(func.count()).select_from(table)) or 0)
                for table in DATA_TABLES
            }

        return await self._run("row_counts", work)


async def _discard(conn: AsyncConnection) -> None:
    """Close a connection for good (never back to the pool: the hot writes changed its settings)."""
    try:
        await conn.invalidate()
        await conn.close()
    except DRIVER_ERRORS as exc:
        log.debug("run store: closing a connection failed: %s", exc)
