"""The schema's version history: numbered migrations, applied once each, in order, under a lock.

Contract: `migrate(conn, lock)` runs inside the one write transaction of `open()`, after `lock`
(the dialect's schema lock: a transaction-level advisory lock on PostgreSQL; on SQLite none is
needed, the transaction itself is `BEGIN IMMEDIATE`), so that processes opening the store at
the same time take turns and each finds the work of the one before it done.
- `schema_version` holds one row per migration applied (`version`, `applied_at`).
- A new database gets the current schema (`schema.metadata`) at once and every version recorded.
- A database at version N gets each migration above N, in order, then any table still missing.
- A database at a version this code does not know (newer) is refused with `RunStoreError`.
Changing a table: edit `schema.py` and append a `Migration` that brings a database of the
previous version to the new shape.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Double,
    Executable,
    Integer,
    MetaData,
    Table,
    column,
    func,
    insert,
    select,
    table,
    text,
)

from engine.run_store import RunStoreError
from services.run_store.schema import deliveries, metadata

schema_version = Table(
    "schema_version",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Double, nullable=False),
)


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _create_initial(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


def _deliveries_apart(conn: Connection) -> None:
    """Version 1 kept `last_seq` and `delivered_seq` in the `runs` row (and a partial index of
    the runs Backend 2 was behind on): each commit of events updated the row the streamer's
    confirmations updated too. Now `delivered_seq` has a table of its own and `last_seq` is
    read from the events."""
    v1_runs = table("runs", column("flow_id"), column("delivered_seq"))
    deliveries.create(conn, checkfirst=True)
    conn.execute(
        insert(deliveries).from_select(["flow_id", "delivered_seq"], select(v1_runs.c.flow_id, v1_runs.c.delivered_seq))
    )
    conn.execute(text("DROP INDEX IF EXISTS ix_runs_undelivered"))
    conn.execute(text("ALTER TABLE runs DROP COLUMN last_seq"))  # SQLite: 3.35 and later
    conn.execute(text("ALTER TABLE runs DROP COLUMN delivered_seq"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "runs, events, checkpoints and their indexes", _create_initial),
    Migration(2, "delivered_seq in a deliveries table; last_seq read from the events", _deliveries_apart),
)
LATEST = MIGRATIONS[-1].version


def migrate(conn: Connection, lock: Executable | None) -> list[int]:
    """Bring the schema to `LATEST`; the versions applied now (none when it was up to date)."""
    if lock is not None:
        conn.execute(lock)
    schema_version.create(conn, checkfirst=True)
    current = conn.scalar(select(func.max(schema_version.c.version)))
    if current is not None and current > LATEST:
        raise RunStoreError(f"run store: the database's schema version {current} is newer than this code's {LATEST}")
    applied = [m for m in MIGRATIONS if current is None or m.version > current]
    if current is not None:
        for migration in applied:
            migration.apply(conn)
    metadata.create_all(conn, checkfirst=True)
    if applied:
        now = time.time()
        conn.execute(insert(schema_version), [{"version": m.version, "applied_at": now} for m in applied])
    return [m.version for m in applied]
