"""A run's events as Server-Sent Events (`GET /flows/{flow_id}/stream`).

Contract: `start_seq(after_seq, last_event_id)` is where a stream starts: after the
`Last-Event-ID` header's seq when it is one (a reconnecting `EventSource` sends it), else after
`after_seq`. `event_stream(fetch, after, first)` yields the stream's bytes: a `retry` hint,
then one message per event — `id: <seq>` and `data: <the event's JSON>`, the same envelope
Backend 2 receives; no `event:` name, so `EventSource.onmessage` sees every event and reads its
`type` — replaying what the store holds, then following the run live through `fetch(after_seq,
timeout)` (a long poll: events after `after_seq`, [] after `timeout` seconds without any, None
once the run is gone). A comment line (`: keep-alive`) goes out after each quiet wait, so
proxies keep the connection. The stream ends after `flow_completed`; a paused run's stream stays
open until it goes on or the client leaves.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 1000
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

Fetch = Callable[[int, float], Awaitable[list[str] | None]]


def start_seq(after_seq: int, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after_seq


async def event_stream(fetch: Fetch, after_seq: int, first: list[str]) -> AsyncIterator[bytes]:
    yield f"retry: {RETRY_MS}\n\n".encode()
    page: list[str] | None = first
    after = after_seq
    while page is not None:
        for text in page:  # stored JSON: one line, no raw newline
            event = json.loads(text)
            after = int(event["seq"])
            yield f"id: {after}\ndata: {text}\n\n".encode()
            if event["type"] == "flow_completed":
                return
        if not page:
            yield b": keep-alive\n\n"
        page = await fetch(after, KEEPALIVE_SECONDS)
