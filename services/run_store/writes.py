"""The store's hot writes — `commit`, `mark_delivered`, a new run — on a driver connection, per dialect.

Contract: `SqlRunStore` holds one connection of its pool for these writes (see `sql`) and hands
its driver connection (aiosqlite's or asyncpg's: `AsyncConnection.get_raw_connection()`) to a
`Writes`, which performs each call as ONE hand-off to the driver, without SQLAlchemy's
per-statement work:
- `commit(driver, prepared)`: a `rules.PreparedCommit` in one transaction — events inserted (an
  event already stored, from a retried commit, is kept as it is), checkpoints upserted, run
  updates applied. Nothing else: no read, no write to the `runs` row unless the batch carries
  the run's update. Retrying a commit is harmless.
- `mark_delivered(driver, pairs)`: raises each run's `deliveries.delivered_seq` to its seq
  (`(flow_id, seq)` pairs, in one transaction), never lowers it; an unknown flow changes nothing.
- `insert_runs(driver, rows)`: new runs (`codec.new_run_row`), each with its delivery row (at
  0); per row True, or False with nothing written for it when its flow id is taken (the store
  then decides on SQLAlchemy whether to replace that run or refuse). One transaction for all:
  a failure writes none of them.
- `hold(driver, check)`: once, when the store takes the connection out of its pool (it is
  never put back: `sql` invalidates it when done with it); with `check`, a round trip first
  proves the connection alive (`sql` asks for it after one was lost).
- `lost(driver, exc)`: the connection is gone (the server went away; `exc`, if given, is what
  a call on it raised), and a new one may succeed.
The SQL names the columns of `schema`'s tables (and of `codec.UPDATE_COLUMNS`) as they are there.

`SqliteWrites` runs the whole transaction in the aiosqlite connection's own thread, in one
hand-off (aiosqlite's `_execute`, on which every one of its methods is built): the write lock
is held only while SQLite works, never across event-loop turns. `BEGIN IMMEDIATE` takes it up
front; the held connection's own `busy_timeout` is 0 and, while another connection holds the
lock, the thread retries with sleeps of 50 µs doubling up to 1 ms (SQLite's busy handler
sleeps 1, 2, 5, 10 … ms) until the store's busy timeout, then raises SQLite's
`database is locked`. The connection checkpoints the WAL only past a high threshold
(`wal_autocheckpoint`, given by the dialect): `sql` has passive checkpoints run elsewhere.

`PostgresWrites` sends one statement, in autocommit (a statement is a transaction; asyncpg
prepares it once per connection, then it is one round trip): a commit of events alone is one
`INSERT` (of `unnest` arrays for several events); any other commit one statement of
data-modifying CTEs (events, checkpoints, run updates, each of `unnest` arrays). `lost`: asyncpg's
`is_closed()` (what SQLAlchemy's own disconnect test reads), or an error that
`errors.connection_lost` recognises.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

from sqlalchemy import URL, Table

from services.run_store.codec import UPDATE_COLUMNS, Row
from services.run_store.errors import connection_lost
from services.run_store.rules import PreparedCommit
from services.run_store.schema import checkpoints, events, runs

_CHECKPOINT_COLUMNS = tuple(column.name for column in checkpoints.columns)
_CHECKPOINT_KEYS = ("flow_id", "element_id")
_CHECKPOINT_CHANGES = ", ".join(f"{c} = excluded.{c}" for c in _CHECKPOINT_COLUMNS if c not in _CHECKPOINT_KEYS)
_EVENT_COLUMNS = ("flow_id", "seq", "payload")
_RUN_COLUMNS = tuple(column.name for column in runs.columns)


class Writes(ABC):
    @abstractmethod
    async def hold(self, driver: Any, *, check: bool = False) -> None: ...

    @abstractmethod
    async def commit(self, driver: Any, prepared: PreparedCommit) -> None: ...

    @abstractmethod
    async def mark_delivered(self, driver: Any, pairs: list[tuple[str, int]]) -> None: ...

    @abstractmethod
    async def insert_runs(self, driver: Any, rows: list[Row]) -> list[bool]: ...

    def lost(self, driver: Any, exc: BaseException | None = None) -> bool:
        return False


# -- SQLite ------------------------------------------------------------------------------------

_SQLITE_EVENTS = "INSERT INTO events (flow_id, seq, payload) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_SQLITE_CHECKPOINTS = (
    f"INSERT INTO checkpoints ({', '.join(_CHECKPOINT_COLUMNS)}) "
    f"VALUES ({', '.join(':' + c for c in _CHECKPOINT_COLUMNS)}) "
    f"ON CONFLICT ({', '.join(_CHECKPOINT_KEYS)}) DO UPDATE SET {_CHECKPOINT_CHANGES}"
)
_SQLITE_UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{c} = :{c}' for c in UPDATE_COLUMNS)} WHERE flow_id = :flow_id"
_SQLITE_INSERT_RUN = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES ({', '.join(':' + c for c in _RUN_COLUMNS)}) "
    "ON CONFLICT DO NOTHING"
)
_SQLITE_NEW_DELIVERY = (
    "INSERT INTO deliveries (flow_id, delivered_seq) VALUES (:flow_id, 0) "
    "ON CONFLICT (flow_id) DO UPDATE SET delivered_seq = 0"
)
_SQLITE_DELIVERED = "UPDATE deliveries SET delivered_seq = :seq WHERE flow_id = :flow_id AND delivered_seq < :seq"

type SqliteWork[R] = Callable[[sqlite3.Connection], R]


class SqliteWrites(Writes):
    FIRST_PAUSE: ClassVar[float] = 0.00005
    MAX_PAUSE: ClassVar[float] = 0.001

    def __init__(self, busy_timeout: float, autocheckpoint: int) -> None:
        self.busy_timeout = busy_timeout
        self.autocheckpoint = autocheckpoint

    async def hold(self, driver: Any, *, check: bool = False) -> None:
        def settings(conn: sqlite3.Connection) -> None:
            conn.execute("PRAGMA busy_timeout = 0")  # the thread waits for the lock itself (see `_begin`)
            conn.execute(f"PRAGMA wal_autocheckpoint = {self.autocheckpoint}")  # checkpoints run elsewhere

        await _in_thread(driver, settings)

    async def commit(self, driver: Any, prepared: PreparedCommit) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if prepared.events:
                conn.executemany(_SQLITE_EVENTS, prepared.events)
            if prepared.checkpoints:
                conn.executemany(_SQLITE_CHECKPOINTS, prepared.checkpoints)
            if prepared.updates:
                conn.executemany(_SQLITE_UPDATE_RUN, [{"flow_id": f} | values for f, values in prepared.updates])

        await _in_thread(driver, self._transaction(work))

    async def mark_delivered(self, driver: Any, pairs: list[tuple[str, int]]) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(_SQLITE_DELIVERED, [{"flow_id": flow_id, "seq": seq} for flow_id, seq in pairs])

        await _in_thread(driver, self._transaction(work))

    async def insert_runs(self, driver: Any, rows: list[Row]) -> list[bool]:
        def work(conn: sqlite3.Connection) -> list[bool]:
            inserted = []
            for row in rows:
                new = conn.execute(_SQLITE_INSERT_RUN, row).rowcount == 1
                if new:
                    conn.execute(_SQLITE_NEW_DELIVERY, row)
                inserted.append(new)
            return inserted

        return await _in_thread(driver, self._transaction(work))

    def _transaction[R](self, work: SqliteWork[R]) -> SqliteWork[R]:
        def transaction(conn: sqlite3.Connection) -> R:
            self._begin(conn)
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return transaction

    def _begin(self, conn: sqlite3.Connection) -> None:
        """`BEGIN IMMEDIATE`, retried while another connection holds the write lock."""
        deadline = time.monotonic() + self.busy_timeout
        pause = self.FIRST_PAUSE
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                left = deadline - time.monotonic()
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or left <= 0:
                    raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, self.MAX_PAUSE)


async def _in_thread[R](driver: Any, work: SqliteWork[R]) -> R:
    """`work` on the aiosqlite connection's sqlite3 connection, in its thread: one hand-off."""
    return cast(R, await driver._execute(work, driver._conn))


# -- PostgreSQL --------------------------------------------------------------------------------


def _arrays(table: Table, names: Sequence[str], first: int) -> str:
    """`unnest($first::type[], …)` of the columns `names` of `table`, typed as the table has them."""
    dialect = URL.create("postgresql+asyncpg").get_dialect()()
    casts = [f"${first + i}::{table.c[name].type.compile(dialect=dialect)}[]" for i, name in enumerate(names)]
    return f"unnest({', '.join(casts)})"


_PG_EVENT = "INSERT INTO events (flow_id, seq, payload) VALUES ($1, $2, $3) ON CONFLICT (flow_id, seq) DO NOTHING"
_PG_EVENTS = (
    f"INSERT INTO events (flow_id, seq, payload) SELECT * FROM {_arrays(events, _EVENT_COLUMNS, 1)} "
    "ON CONFLICT (flow_id, seq) DO NOTHING"
)
_PG_FIRST_CHECKPOINT = 1 + len(_EVENT_COLUMNS)
_PG_FIRST_UPDATE = _PG_FIRST_CHECKPOINT + len(_CHECKPOINT_COLUMNS)
_PG_COMMIT = (
    f"WITH e AS ({_PG_EVENTS}), "
    f"c AS (INSERT INTO checkpoints ({', '.join(_CHECKPOINT_COLUMNS)}) "
    f"SELECT * FROM {_arrays(checkpoints, _CHECKPOINT_COLUMNS, _PG_FIRST_CHECKPOINT)} "
    f"ON CONFLICT ({', '.join(_CHECKPOINT_KEYS)}) DO UPDATE SET {_CHECKPOINT_CHANGES}), "
    f"u AS (UPDATE runs SET {', '.join(f'{c} = v.{c}' for c in UPDATE_COLUMNS)} "
    f"FROM {_arrays(runs, ('flow_id', *UPDATE_COLUMNS), _PG_FIRST_UPDATE)} "
    f"AS v(flow_id, {', '.join(UPDATE_COLUMNS)}) WHERE runs.flow_id = v.flow_id) "
    "SELECT 1"
)
_PG_INSERT_RUN = (
    f"WITH r AS (INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(_RUN_COLUMNS) + 1))}) "
    "ON CONFLICT (flow_id) DO NOTHING RETURNING flow_id) "
    "INSERT INTO deliveries (flow_id, delivered_seq) SELECT flow_id, 0 FROM r "
    "ON CONFLICT (flow_id) DO UPDATE SET delivered_seq = 0 RETURNING flow_id"
)
_PG_DELIVERED = "UPDATE deliveries SET delivered_seq = $2 WHERE flow_id = $1 AND delivered_seq < $2"


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


class PostgresWrites(Writes):
    async def hold(self, driver: Any, *, check: bool = False) -> None:
        """Nothing to set (asyncpg runs each statement in a transaction of its own)."""
        if check:
            await driver.execute("SELECT 1")

    async def commit(self, driver: Any, prepared: PreparedCommit) -> None:
        if not prepared.checkpoints and not prepared.updates:
            if len(prepared.events) == 1:
                await driver.execute(_PG_EVENT, *prepared.events[0])
            else:
                await driver.execute(_PG_EVENTS, *_columns(prepared.events, len(_EVENT_COLUMNS)))
            return
        checkpoint_rows = [[row[c] for c in _CHECKPOINT_COLUMNS] for row in prepared.checkpoints]
        update_rows = [[flow_id, *(values[c] for c in UPDATE_COLUMNS)] for flow_id, values in prepared.updates]
        await driver.execute(
            _PG_COMMIT,
            *_columns(prepared.events, len(_EVENT_COLUMNS)),
            *_columns(checkpoint_rows, len(_CHECKPOINT_COLUMNS)),
            *_columns(update_rows, 1 + len(UPDATE_COLUMNS)),
        )

    async def mark_delivered(self, driver: Any, pairs: list[tuple[str, int]]) -> None:
        await driver.executemany(_PG_DELIVERED, pairs)  # asyncpg: one transaction for all

    async def insert_runs(self, driver: Any, rows: list[Row]) -> list[bool]:
        if len(rows) == 1:  # one statement is a transaction of its own
            return [await self._insert_run(driver, rows[0])]
        async with driver.transaction():  # all or nothing, as on SQLite
            return [await self._insert_run(driver, row) for row in rows]

    @staticmethod
    async def _insert_run(driver: Any, row: Row) -> bool:
        return await driver.fetchval(_PG_INSERT_RUN, *(row[c] for c in _RUN_COLUMNS)) is not None

    def lost(self, driver: Any, exc: BaseException | None = None) -> bool:
        return bool(driver.is_closed()) or (exc is not None and connection_lost(exc))
