"""Forwards events from a coordinator's flows to the Backend 2 streamer actor, batched across flows.

Contract: one `EventOutbox` per coordinator; `outbox.forwarder(flow_id, url)` is a flow's sink
for the scheduler. Calling the sink never blocks: it queues the event and makes sure a flush
is scheduled. A flush waits only `FLUSH_TURNS` turns of the loop (microseconds, no timer), then
hands everything queued — events of every flow of the coordinator — to the streamer in one
`publish_many` call. One call is in flight at a time; what arrives meanwhile goes in the next.
So an idle flow's `flow_started` or LLM token leaves at once (the token relay goal is p99 ≤ 5 ms
to Backend 2), a flow of inline elements is one entry of one call, and under load a thousand
streaming flows share each actor call instead of paying one per token.

Each call's entries are `(flow_id, url, messages, final)`, messages in `seq` order per flow;
`final` says the flow will send no more. `await forwarder.close()` marks the flow final and
returns once that has been handed over. A failed call (the streamer restarting) is retried
whole: the streamer ignores seqs it already holds, so a retry never duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from engine.models import Event

log = logging.getLogger(__name__)

FLUSH_TURNS = 16
_PUBLISH_ATTEMPTS = 5


@dataclass
class _Pending:
    url: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    final: bool = False


class EventOutbox:
    def __init__(self, streamer: Any):
        self._streamer = streamer
        self._pending: dict[str, _Pending] = {}
        self._flush: asyncio.Task | None = None
        self._sent_final: dict[str, asyncio.Future[None]] = {}

    def forwarder(self, flow_id: str, url: str) -> EventForwarder:
        return EventForwarder(self, flow_id, url)

    def add(self, flow_id: str, url: str, message: dict[str, Any]) -> None:
        self._entry(flow_id, url).messages.append(message)
        self._schedule()

    async def end(self, flow_id: str, url: str) -> None:
        """Mark the flow final; returns once the streamer has been told (or gave up trying)."""
        self._entry(flow_id, url).final = True
        done = self._sent_final.setdefault(flow_id, asyncio.get_running_loop().create_future())
        self._schedule()
        try:
            await asyncio.shield(done)
        finally:
            self._sent_final.pop(flow_id, None)

    def _entry(self, flow_id: str, url: str) -> _Pending:
        entry = self._pending.get(flow_id)
        if entry is None:
            entry = self._pending[flow_id] = _Pending(url)
        return entry

    def _schedule(self) -> None:
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            for _ in range(FLUSH_TURNS):
                await asyncio.sleep(0)
            while self._pending:
                batch, self._pending = self._pending, {}
                await self._publish([(fid, p.url, p.messages, p.final) for fid, p in batch.items()])
                for flow_id, pending in batch.items():
                    done = self._sent_final.get(flow_id)
                    if pending.final and done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._flush = None

    async def _publish(self, entries: list[tuple[str, str, list[dict[str, Any]], bool]]) -> None:
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                await self._streamer.publish_many.remote(entries)
                return
            except Exception as exc:  # the streamer restarting: try again shortly
                if attempt == _PUBLISH_ATTEMPTS:
                    events = sum(len(messages) for _, _, messages, _ in entries)
                    log.error("%d events of %d flows not handed to the streamer: %s", events, len(entries), exc)
                    return
                await asyncio.sleep(0.2 * attempt)


class EventForwarder:
    """One flow's sink: the scheduler calls it with each event; `close()` when the flow ended."""

    def __init__(self, outbox: EventOutbox, flow_id: str, url: str):
        self._outbox = outbox
        self._flow_id = flow_id
        self._url = url

    def __call__(self, event: Event) -> None:
        self._outbox.add(self._flow_id, self._url, event.to_message())

    async def close(self) -> None:
        await self._outbox.end(self._flow_id, self._url)
