"""Backend2Streamer: the only place that knows about WebSockets to Backend 2.

Contract:
- `publish(flow_id, url, messages, final=False)` appends events to the flow's log and wakes its
  delivery task; it never waits on the network. `final=True` (or `finish(flow_id)`) says no
  more events will come.
- One delivery task and one WebSocket per flow, so a slow or absent Backend 2 of one flow
  never slows another. Events are sent strictly in `seq` order (the log reorders arrivals).
  After each burst a ping/pong round trip confirms receipt; when a connection is lost the
  task reconnects with exponential backoff and jitter (capped at `RECONNECT_MAX_DELAY`) and
  resends everything after the last confirmed seq — Backend 2 dedupes by `seq`.
- A finished flow's connection is closed once everything was confirmed, or after
  `GIVE_UP_AFTER_FINISH` seconds of failing to reach Backend 2; either way its events stay
  readable through `events(flow_id, after_seq)` until `EVENT_RETENTION_SECONDS` after the end.
- The delivery queue of a flow is bounded (`EVENT_BUFFER_LIMIT`, oldest dropped first from the
  queue only; see `engine.event_log`). `delivery_state` and `stats` report all of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from websockets.asyncio.client import ClientConnection, connect

from actors import metrics
from actors.usage import process_usage
from engine.event_log import FlowEventLog
from engine.logging_setup import configure_logging
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

RECONNECT_FIRST_DELAY = 0.05
RECONNECT_MAX_DELAY = 1.0
GIVE_UP_AFTER_FINISH = 30.0
CONFIRM_TIMEOUT = 5.0
SWEEP_INTERVAL = 5.0


@dataclass
class _Delivery:
    log: FlowEventLog
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    connection: ClientConnection | None = None
    reconnects: int = 0
    last_error: str | None = None
    gave_up: bool = False


class StreamerCore:
    def __init__(self, settings: Settings, give_up_after_finish: float = GIVE_UP_AFTER_FINISH):
        self.settings = settings
        self.give_up_after_finish = give_up_after_finish
        self.flows: dict[str, _Delivery] = {}
        self._sweeper: asyncio.Task | None = None

    # -- API ------------------------------------------------------------------------------

    async def publish(self, flow_id: str, url: str, messages: list[dict[str, Any]], final: bool = False) -> None:
        delivery = self.flows.get(flow_id)
        if delivery is None or (delivery.log.finished and messages and messages[0]["seq"] == 1):
            delivery = self._open(flow_id, url)
        dropped_before = delivery.log.dropped
        delivery.log.add(messages)
        metrics.events_dropped(delivery.log.dropped - dropped_before)
        if final:
            delivery.log.finished_at = time.monotonic()
        delivery.wake.set()

    async def finish(self, flow_id: str) -> None:
        delivery = self.flows.get(flow_id)
        if delivery is not None:
            delivery.log.finished_at = time.monotonic()
            delivery.wake.set()

    async def events(self, flow_id: str, after_seq: int = 0) -> list[dict[str, Any]] | None:
        delivery = self.flows.get(flow_id)
        return None if delivery is None else delivery.log.after(after_seq)

    async def delivery_state(self, flow_id: str) -> dict[str, Any] | None:
        delivery = self.flows.get(flow_id)
        if delivery is None:
            return None
        return {
            **delivery.log.state(),
            "connected": delivery.connection is not None,
            "reconnects": delivery.reconnects,
            "last_error": delivery.last_error,
            "gave_up": delivery.gave_up,
        }

    async def open_flows(self) -> list[dict[str, Any]]:
        """Flows whose end was never announced (for a restarted coordinator to close)."""
        return [
            {"flow_id": fid, "last_seq": d.log.last_seq, "url": d.log.url}
            for fid, d in self.flows.items()
            if not d.log.finished
        ]

    async def stats(self) -> dict[str, Any]:
        return {
            "flows": len(self.flows),
            "connections": sum(d.connection is not None for d in self.flows.values()),
            "delivering": sum(d.task is not None and not d.task.done() for d in self.flows.values()),
            "events": sum(d.log.last_seq for d in self.flows.values()),
            **process_usage(),
        }

    async def close(self) -> None:
        for delivery in self.flows.values():
            if delivery.task is not None:
                delivery.task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()

    # -- delivery -------------------------------------------------------------------------

    def _open(self, flow_id: str, url: str) -> _Delivery:
        previous = self.flows.pop(flow_id, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        delivery = _Delivery(FlowEventLog(flow_id, url, self.settings.event_buffer_limit))
        delivery.task = asyncio.get_running_loop().create_task(self._deliver(delivery), name=f"deliver/{flow_id}")
        self.flows[flow_id] = delivery
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        return delivery

    async def _deliver(self, delivery: _Delivery) -> None:
        event_log = delivery.log
        delay = RECONNECT_FIRST_DELAY
        try:
            while True:
                if not event_log.to_send():
                    if event_log.finished and event_log.delivered_seq >= event_log.last_seq:
                        return
                    delivery.wake.clear()
                    await delivery.wake.wait()
                    continue
                try:
                    await self._send_pending(delivery)
                    delay = RECONNECT_FIRST_DELAY
                except Exception as exc:  # any connection failure: back off and resend
                    await self._drop_connection(delivery, exc)
                    if event_log.finished and time.monotonic() - event_log.finished_at > self.give_up_after_finish:
                        delivery.gave_up = True
                        return
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, RECONNECT_MAX_DELAY)
        finally:
            await self._close_connection(delivery)

    async def _send_pending(self, delivery: _Delivery) -> None:
        event_log = delivery.log
        if delivery.connection is None:
            delivery.connection = await connect(
                event_log.url, open_timeout=3, close_timeout=1, ping_interval=None, max_queue=16
            )
            delivery.last_error = None
        connection = delivery.connection
        while batch := event_log.to_send():
            for message in batch:
                await connection.send(json.dumps(message, default=str))
            event_log.mark_sent(batch[-1]["seq"])
        confirmed = event_log.sent_seq
        pong = await connection.ping()
        await asyncio.wait_for(pong, CONFIRM_TIMEOUT)
        metrics.events_delivered(confirmed - event_log.delivered_seq)
        event_log.mark_delivered(confirmed)

    async def _drop_connection(self, delivery: _Delivery, exc: BaseException) -> None:
        delivery.reconnects += 1
        metrics.backend2_reconnect()
        delivery.last_error = f"{type(exc).__name__}: {exc}"[:300]
        delivery.log.rewind()
        await self._close_connection(delivery)

    @staticmethod
    async def _close_connection(delivery: _Delivery) -> None:
        connection, delivery.connection = delivery.connection, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), 2)
            except Exception:  # closing a broken connection: nothing more to do
                pass

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL, max(self.settings.event_retention_seconds, 0.1)))
            self.expire(time.monotonic())

    def expire(self, now: float) -> int:
        retention = self.settings.event_retention_seconds
        gone = [
            fid for fid, d in self.flows.items() if d.log.expired(now, retention) and (d.task is None or d.task.done())
        ]
        for flow_id in gone:
            del self.flows[flow_id]
        return len(gone)


@ray.remote
class Backend2Streamer(StreamerCore):
    def __init__(self) -> None:
        settings = get_settings()
        configure_logging(settings)
        super().__init__(settings)
