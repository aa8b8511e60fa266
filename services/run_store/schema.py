"""The tables of the SQL run store, as SQLAlchemy Core metadata (the current version).

Contract:
- `runs`: one row per flow id (see `codec.new_run_row`); `snapshot` and `error` are JSON text,
  `duration_ms` and `error` copied from the snapshot for listings. Only `create_run`, a commit
  that carries the run's `RunUpdate`, and `prune` write it: a commit of events alone never does.
  A run's `last_seq` is not stored: it is the highest seq of its events, read through the
  events' primary key (one index lookup).
- `deliveries`: `flow_id` → `delivered_seq`, the highest seq Backend 2 confirmed; a row per run,
  made with it. The streamer's confirmations write only this table, so they never wait on (nor
  hold up) the `runs` row or the events a coordinator writes.
- `events`: `(flow_id, seq)` → `payload` (the event's JSON text), primary key `(flow_id, seq)`.
- `checkpoints`: `(flow_id, element_id)` → the element's settled state, upserted.
- Indexes serve each query of the store: `list_runs` (`created_at`, `flow_id`; with the owner
  first for a caller's own listing), `unfinished_runs` (`status`, `coordinator`), `prune`
  (`finished_at`); `open_deliveries` reads every run with its delivery row and, for finished
  ones, its last seq (an index lookup each).
- `schema_version` (in `migrations`) records which numbered migrations a database has had.
Columns are portable types: TEXT/VARCHAR, BLOB/BYTEA, INTEGER/BIGINT, REAL/DOUBLE PRECISION.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("flow_id", String, primary_key=True),
    Column("owner", String, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("backend2_ws_url", String, nullable=False),
    Column("coordinator", Integer, nullable=False),
    Column("status", String, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Column("snapshot", Text),
    Column("duration_ms", Double),
    Column("error", Text),
)

Index("ix_runs_created", runs.c.created_at, runs.c.flow_id)
Index("ix_runs_owner_created", runs.c.owner, runs.c.created_at, runs.c.flow_id)
Index("ix_runs_status_coordinator", runs.c.status, runs.c.coordinator)
Index("ix_runs_finished_at", runs.c.finished_at)

deliveries = Table(
    "deliveries",
    metadata,
    Column("flow_id", String, primary_key=True),
    Column("delivered_seq", BigInteger, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("flow_id", String, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    PrimaryKeyConstraint("flow_id", "seq", name="pk_events"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("flow_id", String, nullable=False),
    Column("element_id", String, nullable=False),
    Column("state", String, nullable=False),
    Column("outputs", Text),
    Column("ports", Text),
    Column("attempts", Integer, nullable=False),
    Column("started_at", String),
    Column("duration_ms", Double),
    Column("error", Text),
    PrimaryKeyConstraint("flow_id", "element_id", name="pk_checkpoints"),
)

DATA_TABLES: tuple[Table, ...] = (runs, events, checkpoints)  # what `row_counts` counts
