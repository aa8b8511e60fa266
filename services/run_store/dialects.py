"""Where SQLite and PostgreSQL differ for the run store; everything else is one implementation.

Contract: a `SqlDialect` makes the store's `AsyncEngine` and supplies the few statements that
are not portable:
- `insert_ignore` / `upsert`: `INSERT … ON CONFLICT DO NOTHING / DO UPDATE` through the
  dialect's own `insert` construct (`sqlalchemy.dialects.sqlite` / `.postgresql`).
- `schema_lock`: what `open()` executes first in its migration transaction.
- `reclaim(engine)`: after a prune that deleted rows, give the space back.
- `error(op, exc)`: a `RunStoreError` naming the database without its password.
A transaction that will write is marked with the execution option `WRITE_OPTION`.

`SqliteDialect` — the file `<dir>/runs.sqlite3` shared by several processes (coordinators,
streamer, HTTP ingress): the directory is created; every connection sets `busy_timeout` (a
writer waits for another's transaction instead of failing), `journal_mode=WAL` (readers never
block the writer), `synchronous=NORMAL` (durable at each checkpoint, no fsync per commit: a
power loss may lose the last commits, never corrupt the file), `auto_vacuum=INCREMENTAL`
(effective from the file's creation) and a WAL size limit. The driver's own transaction
handling is off (`isolation_level=None`): SQLAlchemy's `begin` emits `BEGIN IMMEDIATE` for a
write transaction — the write lock taken up front, so a writer waits on `busy_timeout` instead
of failing on a stale read snapshot — and `BEGIN` for a read. `reclaim` runs
`PRAGMA incremental_vacuum` and a passive WAL checkpoint: the freed pages leave the file.

`PostgresDialect` — a `postgresql://` (or `postgres://`) URL, driven by asyncpg
(`postgresql+asyncpg://`); pooled connections are pinged before use (a restarted server costs
one reconnect, not an error); `schema_lock` is `pg_advisory_xact_lock`, released at commit.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, quote_plus

from sqlalchemy import URL, Connection, Executable, Insert, Table, event, func, make_url, select
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.run_store import RunStoreError
from services.run_store.errors import DRIVER_ERRORS, store_error

WRITE_OPTION = "run_store_write"
_RECLAIM_ERRORS: tuple[type[Exception], ...] = (*DRIVER_ERRORS, sqlite3.Error)  # the driver is called directly there
SQLITE_FILE = "runs.sqlite3"


class SqlDialect(ABC):
    schema_lock: Executable | None = None

    def __init__(self, where: str, secrets: tuple[str, ...] = ()) -> None:
        self.where = where  # the database, for messages: never with credentials
        self._secrets = secrets

    @abstractmethod
    def create_engine(self) -> AsyncEngine: ...

    @abstractmethod
    def _insert(self, table: Table) -> SqliteInsert | PostgresInsert: ...

    def insert_ignore(self, table: Table, keys: list[str]) -> Insert:
        return self._insert(table).on_conflict_do_nothing(index_elements=keys)

    def upsert(self, table: Table, keys: list[str]) -> Insert:
        stmt = self._insert(table)
        changes = {column.name: stmt.excluded[column.name] for column in table.columns if column.name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=changes)

    @abstractmethod
    async def reclaim(self, engine: AsyncEngine) -> None:
        """Give back the space of deleted rows."""

    def error(self, op: str, exc: BaseException) -> RunStoreError:
        return store_error(op, self.where, exc, self._secrets)


class SqliteDialect(SqlDialect):
    JOURNAL_SIZE_LIMIT: ClassVar[int] = 16 * 1024 * 1024

    def __init__(self, directory: Path, *, busy_timeout: float = 10.0) -> None:
        self.path = directory / SQLITE_FILE
        super().__init__(f"SQLite {self.path}")
        self._pragmas = (
            f"PRAGMA busy_timeout = {max(0, round(busy_timeout * 1000))}",
            "PRAGMA auto_vacuum = INCREMENTAL",  # before the first table: fixed at the file's creation
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
            f"PRAGMA journal_size_limit = {self.JOURNAL_SIZE_LIMIT}",
        )

    def create_engine(self) -> AsyncEngine:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self.error("open", exc) from exc
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

    async def reclaim(self, engine: AsyncEngine) -> None:
        try:
            async with engine.connect() as conn:
                # The driver's `execute` steps a statement once, and each step of incremental_vacuum
                # frees one page: `executescript` steps it to the end (outside any transaction).
                driver = (await conn.get_raw_connection()).driver_connection  # the aiosqlite connection
                if driver is not None:
                    await driver.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(PASSIVE);")
        except _RECLAIM_ERRORS as exc:
            raise self.error("prune (reclaiming space)", exc) from exc


def _begin(conn: Connection) -> None:
    """SQLite: open the transaction SQLAlchemy begins: `BEGIN IMMEDIATE` to write, else `BEGIN`."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")


class PostgresDialect(SqlDialect):
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

    def create_engine(self) -> AsyncEngine:
        return create_async_engine(self.url, pool_pre_ping=True)

    def _insert(self, table: Table) -> PostgresInsert:
        return postgres_insert(table)

    async def reclaim(self, engine: AsyncEngine) -> None:
        """Nothing to do: autovacuum makes the space of deleted rows reusable."""
