"""Where SQLite and PostgreSQL differ for the run store; everything else is one implementation.

Contract: a `SqlDialect` makes the store's `AsyncEngine` and supplies what is not portable:
- `insert_ignore` / `upsert`: `INSERT … ON CONFLICT DO NOTHING / DO UPDATE` through the
  dialect's own `insert` construct (`sqlalchemy.dialects.sqlite` / `.postgresql`).
- `writes()`: the hot writes (`commit`, `mark_delivered`) on a driver connection (`writes`).
- `prepare()`: what `open()` does before it makes the engine; `schema_lock`: what it executes
  first in its migration transaction.
- `reclaim(engine)`: after a prune that deleted rows, give the space back.
- `checkpoint_every` / `checkpoint()`: how many hot writes of a store may pass before it runs
  `checkpoint` (in a task of its own, off the writes' path; None: never).
- `error(op, exc)`: a `RunStoreError` naming the database without its password.
A transaction that will write is marked with the execution option `WRITE_OPTION`.

`SqliteDialect` — the file `<dir>/runs.sqlite3` shared by several processes (coordinators,
streamer, HTTP ingress): `prepare` creates the directory and gives the file
`auto_vacuum=INCREMENTAL` (effective from the file's creation) and `journal_mode=WAL` (readers
never block the writer; kept by the file), in a worker thread; every connection sets
`busy_timeout` (a writer waits for another's transaction instead of failing),
`synchronous=NORMAL` (durable at each checkpoint, no fsync per commit: a power loss may lose
the last commits, never corrupt the file) and a WAL size limit. The driver's own transaction
handling is off (`isolation_level=None`): SQLAlchemy's `begin` emits `BEGIN IMMEDIATE` for a
write transaction — the write lock taken up front, so a writer waits on `busy_timeout` instead
of failing on a stale read snapshot — and `BEGIN` for a read. WAL checkpoints (an fsync of the
WAL and the file: milliseconds, paid by the commit that crossed SQLite's threshold) are kept
off the hot writes: `checkpoint` — a passive checkpoint, which never blocks a writer — runs
every `checkpoint_every` hot writes of a store, in a worker thread on a sqlite3 connection of
its own; the next write transaction that finds the WAL all copied restarts it from the start.
The hot writes' connection checkpoints by itself only past `HOT_AUTOCHECKPOINT` pages (when
writes never paused long enough for a restart; what is left to copy is then little), the
others past SQLite's default 1000, which the passive checkpoints rarely let the WAL reach.
`reclaim` runs `PRAGMA incremental_vacuum` and a passive WAL checkpoint: the freed pages leave
the file.

`PostgresDialect` — a `postgresql://` (or `postgres://`) URL, driven by asyncpg
(`postgresql+asyncpg://`). Pooled connections are not pinged before use (a round trip per
transaction): the store retries a call once on a connection found gone (`sql`), so a restarted
server costs one reconnect, not an error; an error `errors.connection_lost` recognises counts
as a disconnect for SQLAlchemy (`handle_error`). The pool keeps `POOL_SIZE` connections (one
of them held by the hot writes) and opens up to `MAX_OVERFLOW` more under load; `schema_lock`
is `pg_advisory_xact_lock`, released at commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

from sqlalchemy import URL, Connection, Executable, Insert, Table, event, func, make_url, select
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import DBAPIConnection, ExceptionContext
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.run_store import RunStoreError
from services.run_store.errors import DRIVER_ERRORS, connection_lost, store_error
from services.run_store.writes import PostgresWrites, SqliteWrites, Writes

WRITE_OPTION = "run_store_write"
SQLITE_FILE = "runs.sqlite3"
_INCREMENTAL = 2  # PRAGMA auto_vacuum


class SqlDialect(ABC):
    schema_lock: Executable | None = None
    checkpoint_every: int | None = None

    def __init__(self, where: str, secrets: tuple[str, ...] = ()) -> None:
        self.where = where  # the database, for messages: never with credentials
        self._secrets = secrets

    @abstractmethod
    async def prepare(self) -> None:
        """Before the engine is made: what the database needs once, whoever opens it first."""

    @abstractmethod
    def create_engine(self) -> AsyncEngine: ...

    @abstractmethod
    def _insert(self, table: Table) -> SqliteInsert | PostgresInsert: ...

    @abstractmethod
    def writes(self) -> Writes: ...

    def insert_ignore(self, table: Table, keys: list[str]) -> Insert:
        return self._insert(table).on_conflict_do_nothing(index_elements=keys)

    def upsert(self, table: Table, keys: list[str]) -> Insert:
        stmt = self._insert(table)
        changes = {column.name: stmt.excluded[column.name] for column in table.columns if column.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=changes)

    @abstractmethod
    async def reclaim(self, engine: AsyncEngine) -> None:
        """Give back the space of deleted rows."""

    @abstractmethod
    async def checkpoint(self) -> None:
        """Checkpoint the database's write-ahead log, if the store is the one to."""

    def error(self, op: str, exc: BaseException) -> RunStoreError:
        return store_error(op, self.where, exc, self._secrets)


class SqliteDialect(SqlDialect):
    JOURNAL_SIZE_LIMIT: ClassVar[int] = 16 * 1024 * 1024
    HOT_AUTOCHECKPOINT: ClassVar[int] = 4000  # pages
    checkpoint_every = 256  # hot writes: a write adds about two pages to the WAL

    def __init__(self, directory: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = directory / SQLITE_FILE
        self.busy_timeout = busy_timeout
        super().__init__(f"SQLite {self.path}")
        self._pragmas = (
            f"PRAGMA busy_timeout = {max(0, round(busy_timeout * 1000))}",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA journal_size_limit = {self.JOURNAL_SIZE_LIMIT}",
        )

    async def prepare(self) -> None:
        await self._in_thread("open", self._prepare)

    def _prepare(self) -> None:
        """The directory, `auto_vacuum` (fixed at the file's creation; setting it takes the write
        lock, even when it is set already) and WAL mode (kept by the file). Switching to WAL
        needs the file to itself and may fail at once, without waiting on `busy_timeout`, while
        another process opens the new file too: then it is tried again until that timeout."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout
        with closing(sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)) as conn:
            if conn.execute("PRAGMA auto_vacuum").fetchone() != (_INCREMENTAL,):
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            while conn.execute("PRAGMA journal_mode").fetchone() != ("wal",):
                try:
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)

    def create_engine(self) -> AsyncEngine:
        url = URL.create("sqlite+aiosqlite", database=str(self.path))
        engine = create_async_engine(url, connect_args={"isolation_level": None})
        event.listen(engine.sync_engine, "connect", self._on_connect)
        event.listen(engine.sync_engine, "begin", _begin)
        return engine

    def _on_connect(self, dbapi_connection: DBAPIConnection, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            for pragma in self._pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    def _insert(self, table: Table) -> SqliteInsert:
        return sqlite_insert(table)

    def writes(self) -> SqliteWrites:
        return SqliteWrites(self.busy_timeout, self.HOT_AUTOCHECKPOINT)

    async def reclaim(self, engine: AsyncEngine) -> None:
        # The driver's `execute` steps a statement once, and each step of incremental_vacuum
        # frees one page: `executescript` steps it to the end (outside any transaction).
        await self._script(
            engine, "prune (reclaiming space)", "PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(PASSIVE);"
        )

    async def checkpoint(self) -> None:
        await self._in_thread("checkpoint", self._checkpoint)

    def _checkpoint(self) -> None:
        with closing(sqlite3.connect(self.path, timeout=0, isolation_level=None)) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def _in_thread(self, op: str, work: Callable[[], None]) -> None:
        """`work` (on a sqlite3 connection of its own) in a worker thread: the event loop goes on."""
        try:
            await asyncio.to_thread(work)
        except DRIVER_ERRORS as exc:
            raise self.error(op, exc) from exc

    async def _script(self, engine: AsyncEngine, op: str, script: str) -> None:
        try:
            async with engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection  # the aiosqlite connection
                if driver is not None:
                    await driver.executescript(script)
        except DRIVER_ERRORS as exc:
            raise self.error(op, exc) from exc


def _begin(conn: Connection) -> None:
    """SQLite: open the transaction SQLAlchemy begins: `BEGIN IMMEDIATE` to write, else `BEGIN`."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


def _disconnect_if_lost(context: ExceptionContext) -> None:
    """PostgreSQL: what `connection_lost` recognises is a disconnect too (SQLAlchemy's own test
    reads only `is_closed()`, which a terminated connection may not show yet): the connection
    and the pool's others are invalidated, the `DBAPIError` has `connection_invalidated`."""
    if not context.is_disconnect and connection_lost(context.original_exception):
        context.is_disconnect = True


class PostgresDialect(SqlDialect):
    POOL_SIZE: ClassVar[int] = 6  # the hot writes' connection, and SQLAlchemy's default five for the rest
    MAX_OVERFLOW: ClassVar[int] = 10
    schema_lock = select(func.pg_advisory_xact_lock(0x72756E5F73746F72))  # "run_stor"

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            parsed = None
        if parsed is None or parsed.drivername not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise RunStoreError("run store: RUN_STORE_URL must be a postgresql:// URL")
        self.url = parsed.set(drivername="postgresql+asyncpg")
        password = parsed.password or ""
        port = f":{parsed.port}" if parsed.port else ""
        super().__init__(
            f"PostgreSQL database {parsed.database or '(default)'} on {parsed.host or 'the local socket'}{port}",
            (password, quote(password, safe=""), quote_plus(password)),
        )

    async def prepare(self) -> None:
        """Nothing: the database exists (the server's), `migrations` makes the tables."""

    def create_engine(self) -> AsyncEngine:
        engine = create_async_engine(self.url, pool_size=self.POOL_SIZE, max_overflow=self.MAX_OVERFLOW)
        event.listen(engine.sync_engine, "handle_error", _disconnect_if_lost)
        return engine

    def _insert(self, table: Table) -> PostgresInsert:
        return postgres_insert(table)

    def writes(self) -> PostgresWrites:
        return PostgresWrites()

    async def reclaim(self, engine: AsyncEngine) -> None:
        """Nothing to do: autovacuum makes the space of deleted rows reusable."""

    async def checkpoint(self) -> None:
        """Nothing to do: the server checkpoints (`checkpoint_every` is None)."""
