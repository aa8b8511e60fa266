"""Pages of `list_runs`: the size of a page, the position a cursor names, the page answered.

Contract: runs are listed newest first — `engine.run_store.newest_first`, descending: by
`created_at`, then by `flow_id` — so a listing is a total order and a cursor names one position
in it. Cursors are `engine.run_store`'s (`run_cursor` / `parse_run_cursor`), so that a cursor
made anywhere (a store, or the HTTP layer merging the pages of several coordinators) continues
a listing in every backend alike.
- `page_limit` clamps a requested page size to 1..500; `in_listing_order` sorts summaries so.
- `cursor_position(before)`: `(created_at, flow_id)` to list strictly after, or None when
  `before` is not a cursor (or names no finite time): such a listing is empty, in every backend.
- `make_page(summaries, size)`: from up to `size + 1` summaries in listing order, the page of
  the first `size`, with `next` (the cursor after its last run) only when there were more.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from engine.run_store import RunPage, RunSummary, newest_first, parse_run_cursor, run_cursor

MAX_PAGE = 500


def page_limit(limit: int) -> int:
    return min(max(limit, 1), MAX_PAGE)


def in_listing_order(summaries: Iterable[RunSummary]) -> list[RunSummary]:
    return sorted(summaries, key=newest_first, reverse=True)


def cursor_position(before: str) -> tuple[float, str] | None:
    position = parse_run_cursor(before)
    if position is None or not math.isfinite(position[0]):
        return None
    return position


def make_page(summaries: list[RunSummary], size: int) -> RunPage:
    page = summaries[:size]
    return RunPage(runs=page, next=run_cursor(page[-1]) if len(summaries) > size else None)
