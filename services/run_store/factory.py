"""`open_run_store(settings)`: the run store this process is configured for.

Contract: picks the backend by `settings.run_store_kind()` — `memory` (`MemoryRunStore`),
`postgres` (`SqlRunStore` on `RUN_STORE_URL`, which must be a `postgresql://` URL: a missing
or other URL raises `RunStoreError`, whose message never holds the URL) or `sqlite`
(`SqlRunStore` on `<DATA_DIR>/runs.sqlite3`). Nothing is connected yet: the caller awaits
`store.open()` (and `store.close()` at the end).
"""

from __future__ import annotations

from pathlib import Path

from engine.run_store import RunStore, RunStoreError
from engine.settings import Settings
from services.run_store.memory import MemoryRunStore
from services.run_store.sql import SqlRunStore


def open_run_store(settings: Settings) -> RunStore:
    kind = settings.run_store_kind()
    if kind == "memory":
        return MemoryRunStore()
    if kind == "postgres":
        if settings.run_store_url is None:
            raise RunStoreError("run store: RUN_STORE=postgres needs RUN_STORE_URL (postgresql://…)")
        return SqlRunStore.postgres(settings.run_store_url.get_secret_value())
    return SqlRunStore.sqlite(Path(settings.data_dir))
