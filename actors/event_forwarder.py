"""Forwards one flow's events from its coordinator to the Backend 2 streamer actor.

Contract: it is the scheduler's sink. `__call__` never blocks: it queues the event and makes
sure a flush is scheduled on the running loop. The flow's first flush waits only
`FIRST_FLUSH_TURNS` turns of the loop (microseconds; a flow of inline elements ends within
them and travels as one publish), so `flow_started` reaches Backend 2 at once and the streamer
connects while the flow runs; later flushes wait `FLUSH_DELAY`. A flush sends everything queued
so far as one `publish` call, and only one publish per flow is in flight at a time, so batches
reach the streamer in `seq` order and a burst of LLM tokens costs one actor call, not one per
token.
`close()` flushes the rest and tells the streamer the flow has ended — with the last batch
(`final=True`) when there is one, so a short flow costs as few actor calls as possible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.models import Event

log = logging.getLogger(__name__)

_PUBLISH_ATTEMPTS = 5
# Events of the next 2 ms travel together: a short flow's whole run is one actor call, and a
# token stream still reaches Backend 2 within a few ms (the relay goal is p99 ≤ 5 ms).
FLUSH_DELAY = 0.002
FIRST_FLUSH_TURNS = 16


class EventForwarder:
    def __init__(self, streamer: Any, flow_id: str, url: str):
        self._streamer = streamer
        self._flow_id = flow_id
        self._url = url
        self._queued: list[dict[str, Any]] = []
        self._flush: asyncio.Task | None = None
        self._closing = False
        self._final_sent = False
        self._first = True

    def __call__(self, event: Event) -> None:
        self._queued.append(event.to_message())
        if self._flush is None:
            self._flush = asyncio.get_running_loop().create_task(self._drain(first=self._first))
            self._first = False

    async def _drain(self, first: bool = False, wait: bool = True) -> None:
        try:
            if first:
                for _ in range(FIRST_FLUSH_TURNS):
                    if self._closing:
                        break
                    await asyncio.sleep(0)
            elif wait:
                await asyncio.sleep(FLUSH_DELAY)
            while self._queued:
                batch, self._queued = self._queued, []
                final = self._closing
                await self._publish(batch, final)
                self._final_sent = final
        finally:
            self._flush = None

    async def _publish(self, batch: list[dict[str, Any]], final: bool) -> None:
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                await self._streamer.publish.remote(self._flow_id, self._url, batch, final)
                return
            except Exception as exc:  # the streamer restarting: try again shortly
                if attempt == _PUBLISH_ATTEMPTS:
                    log.error("flow %s: %d events not handed to the streamer: %s", self._flow_id, len(batch), exc)
                    return
                await asyncio.sleep(0.2 * attempt)

    async def close(self) -> None:
        """Flush the rest; the last publish carries `final`, else a separate `finish` does."""
        self._closing = True
        if self._flush is None and self._queued:
            self._flush = asyncio.get_running_loop().create_task(self._drain(wait=False))
        while self._flush is not None:
            await asyncio.shield(self._flush)
        if self._final_sent:
            return
        try:
            await self._streamer.finish.remote(self._flow_id)
        except Exception as exc:
            log.error("flow %s: streamer not told the flow ended: %s", self._flow_id, exc)
