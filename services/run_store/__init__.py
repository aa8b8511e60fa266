"""The run store's backends (the interface and its contract: `engine.run_store`).

- `factory.open_run_store(settings)`: the configured store (the caller awaits `open()`).
- `sql.SqlRunStore`: SQLite (the embedded default) and PostgreSQL, on SQLAlchemy Core async,
  with `schema`, `migrations`, `dialects` (what differs between the two) and `errors`; its hot
  writes (commits, delivery confirmations, new runs) on the driver connection, in `writes`.
- `memory.MemoryRunStore`: the same behaviour in memory, for tests and benchmarks.
- Shared by both: `codec` (records ↔ rows, JSON text), `rules` (the contract's decisions),
  `paging` (page size and cursor of `list_runs`).
"""

from services.run_store.factory import open_run_store
from services.run_store.memory import MemoryRunStore
from services.run_store.sql import SqlRunStore

__all__ = ["MemoryRunStore", "SqlRunStore", "open_run_store"]
