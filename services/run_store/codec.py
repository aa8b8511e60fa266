"""Rows of the run store: how records become column values and back, for every backend.

Contract: a run, a checkpoint and a run update each map to one flat row (a dict of column
name to value) — the same rows the SQL tables hold and the memory store keeps, so that both
decode through the same functions and behave alike.
- JSON values (a run's snapshot, a checkpoint's outputs, ports and error, a summary's error)
  are stored as compact JSON text (stdlib `json`; ASCII-escaped, so any driver stores it;
  a value JSON cannot encode is stored as its `str`, as the engine's event log does).
  Decoding gives fresh objects: nothing read aliases what was written.
- A run's row holds neither its last seq nor its delivered seq (see `schema`): `record_of` and
  `delivery_of` read them from the row a query made (`last_seq`, `delivered_seq` columns).
- A run update of a finished status without `finished_at` is stored with the commit's time,
  so that `prune` can always reach it. A run's `duration_ms` and `error` are copied out of its
  snapshot into columns of their own: listing runs never decodes snapshots.
- A status or element state read back that the contract does not know raises `RunStoreError`
  (the table was written by something else).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast, get_args

from engine.contracts import ElementStateName, ErrorInfo, FlowStatusName, RunSnapshot
from engine.run_store import (
    FINISHED,
    ElementCheckpoint,
    NewRun,
    OpenDelivery,
    RunRecord,
    RunStoreError,
    RunSummary,
    RunUpdate,
)

Row = dict[str, Any]
StoredRow = Mapping[Any, Any]  # a `Row`, or a row as SQLAlchemy reads it (`RowMapping`)

_STATUSES: frozenset[str] = frozenset(get_args(FlowStatusName))
_STATES: frozenset[str] = frozenset(get_args(ElementStateName))


def dumps(value: object) -> str:
    """A JSON value as the compact text the store keeps."""
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    """The JSON value of stored text (`None` for SQL NULL)."""
    return None if text is None else json.loads(text)


def _dumps_or_null(value: object) -> str | None:
    return None if value is None else dumps(value)


def status_of(value: object) -> FlowStatusName:
    if value not in _STATUSES:
        raise RunStoreError(f"run store: unknown run status {value!r} in the runs table")
    return cast(FlowStatusName, value)


def state_of(value: object) -> ElementStateName:
    if value not in _STATES:
        raise RunStoreError(f"run store: unknown element state {value!r} in the checkpoints table")
    return cast(ElementStateName, value)


def new_run_row(run: NewRun) -> Row:
    """The row of a run just created (or replacing a finished one): pending, nothing stored yet."""
    return {
        "flow_id": run.flow_id,
        "owner": run.owner,
        "body": run.body,
        "backend2_ws_url": run.backend2_ws_url,
        "coordinator": run.coordinator,
        "status": "pending",
        "created_at": run.created_at,
        "finished_at": None,
        "snapshot": None,
        "duration_ms": None,
        "error": None,
    }


UPDATE_COLUMNS = ("status", "snapshot", "finished_at", "duration_ms", "error")  # the keys of `update_values`


def update_values(update: RunUpdate, now: float) -> Row:
    """The columns a `RunUpdate` sets (`UPDATE_COLUMNS`)."""
    finished_at = update.finished_at
    if finished_at is None and update.status in FINISHED:
        finished_at = now
    return {
        "status": update.status,
        "snapshot": dumps(update.snapshot),
        "finished_at": finished_at,
        "duration_ms": update.snapshot.get("duration_ms"),
        "error": _dumps_or_null(update.snapshot.get("error")),
    }


def record_of(row: StoredRow) -> RunRecord:
    return RunRecord(
        flow_id=str(row["flow_id"]),
        owner=str(row["owner"]),
        body=bytes(row["body"]),
        backend2_ws_url=str(row["backend2_ws_url"]),
        coordinator=int(row["coordinator"]),
        status=status_of(row["status"]),
        created_at=float(row["created_at"]),
        finished_at=_float_or_none(row["finished_at"]),
        snapshot=cast(RunSnapshot | None, loads(row["snapshot"])),
        last_seq=int(row["last_seq"]),
        delivered_seq=int(row["delivered_seq"]),
    )


def summary_of(row: StoredRow) -> RunSummary:
    """A run's summary; a paused run's `snapshot` (the only one a listing reads) names what it waits at."""
    status = status_of(row["status"])
    snapshot = loads(row["snapshot"]) if status == "paused" and row.get("snapshot") else None
    waiting = [str(w["element_id"]) for w in snapshot.get("waiting", [])] if isinstance(snapshot, dict) else []
    return RunSummary(
        flow_id=str(row["flow_id"]),
        status=status,
        created_at=float(row["created_at"]),
        finished_at=_float_or_none(row["finished_at"]),
        duration_ms=_float_or_none(row["duration_ms"]),
        error=cast(ErrorInfo | None, loads(row["error"])),
        waiting=waiting,
    )


def delivery_of(row: StoredRow) -> OpenDelivery:
    return OpenDelivery(
        flow_id=str(row["flow_id"]),
        backend2_ws_url=str(row["backend2_ws_url"]),
        delivered_seq=int(row["delivered_seq"]),
        last_seq=int(row["last_seq"]),
        finished=status_of(row["status"]) in FINISHED,
        coordinator=int(row["coordinator"]),
    )


def checkpoint_row(flow_id: str, checkpoint: ElementCheckpoint) -> Row:
    return {
        "flow_id": flow_id,
        "element_id": checkpoint.element_id,
        "state": checkpoint.state,
        "outputs": _dumps_or_null(checkpoint.outputs),
        "ports": _dumps_or_null(checkpoint.ports),
        "attempts": checkpoint.attempts,
        "started_at": checkpoint.started_at,
        "duration_ms": checkpoint.duration_ms,
        "error": _dumps_or_null(checkpoint.error),
    }


def checkpoint_of(row: StoredRow) -> ElementCheckpoint:
    started_at = row["started_at"]
    return ElementCheckpoint(
        element_id=str(row["element_id"]),
        state=state_of(row["state"]),
        outputs=loads(row["outputs"]),
        ports=cast(list[str] | None, loads(row["ports"])),
        attempts=int(row["attempts"]),
        started_at=None if started_at is None else str(started_at),
        duration_ms=_float_or_none(row["duration_ms"]),
        error=cast(ErrorInfo | None, loads(row["error"])),
    )


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(cast(float, value))
