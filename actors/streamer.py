"""Backend2Streamer: the only place that knows about WebSockets to Backend 2.

Contract:
- `publish(flow_id, url, messages, final=False)` appends events to the flow's log and wakes
  its delivery task; it never waits on the network. `publish_many` does it for several flows
  in one call (what a coordinator's `EventOutbox` sends). `final=True` (or `finish(flow_id)`) says
  no more events will come; a later publish starting again at seq 1 is a new run of the id.
- One delivery task and one WebSocket per flow, so a slow or absent Backend 2 of one flow
  never slows another (no lock is shared across flows). Events go out as JSON text frames,
  strictly in `seq` order (the log reorders arrivals; see `engine.event_log`).
- Confirmation: after each burst a ping is sent; its pong means Backend 2 read every frame
  before it. At most `WINDOW` events are unconfirmed at a time, so a slow reader is never
  taken for a dead one; a pong missing for `ACK_TIMEOUT` seconds is.
- A lost connection is retried with exponential backoff and jitter (at most
  `RECONNECT_MAX_DELAY` apart) and delivery resumes after the last event confirmed at least
  `RESEND_GRACE` seconds before the loss: a few events may arrive twice, and Backend 2 dedupes
  them by `seq` (contiguous per flow). Nothing is skipped but what the bounded queue dropped.
- A finished flow's connection is closed once everything is confirmed, or when delivery made
  no progress for `give_up_after_finish` seconds after the end (`gave_up` in the state).
  Either way its events stay readable through `events(flow_id, after_seq)` until
  `EVENT_RETENTION_SECONDS` after the end; then the flow is forgotten.
- Logs and states never contain a URL's credentials or query; events are never logged.
- State is in memory: a restarted streamer knows only the flows published to it since.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import ray
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from actors import metrics
from actors.usage import MemoryReclaimer, process_usage
from engine.event_log import EventLogStore, FlowEventLog
from engine.logging_setup import configure_logging
from engine.settings import Settings, get_settings

log = logging.getLogger(__name__)

RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 1.0
GIVE_UP_AFTER_FINISH = 30.0
ACK_TIMEOUT = 30.0
WINDOW = 100
OPEN_TIMEOUT = 3.0
CLOSE_TIMEOUT = 1.0
SWEEP_INTERVAL = 5.0


class ConnectionLost(ConnectionError):
    """Backend 2 closed the connection or stopped answering pings."""


@dataclass
class _Ack:
    seq: int
    pong: Awaitable[float]
    sent_at: float


@dataclass
class _Delivery:
    log: FlowEventLog
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None
    connection: ClientConnection | None = None
    reconnects: int = 0
    last_error: str | None = None
    gave_up: bool = False
    progress_at: float = field(default_factory=time.monotonic)

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.state is State.OPEN


def safe_url(url: str) -> str:
    """The URL without credentials, query or fragment (tokens often travel there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe_error(exc: BaseException, url: str) -> str:
    text = f"{type(exc).__name__}: {exc}".replace(url, safe_url(url))
    return text[:300]


def backoff_delay(attempt: int) -> float:
    """Exponential, capped, with jitter (50-100 % of the nominal delay)."""
    nominal = min(RECONNECT_FIRST_DELAY * 2 ** min(attempt, 16), RECONNECT_MAX_DELAY)
    return nominal * random.uniform(0.5, 1.0)


class StreamerCore:
    """The streamer's logic; `Backend2Streamer` is this class as a Ray actor."""

    def __init__(
        self,
        settings: Settings,
        give_up_after_finish: float = GIVE_UP_AFTER_FINISH,
        ack_timeout: float = ACK_TIMEOUT,
    ):
        self.settings = settings
        self.give_up_after_finish = give_up_after_finish
        self.ack_timeout = ack_timeout
        self.logs = EventLogStore(settings.event_retention_seconds, settings.event_buffer_limit)
        self.flows: dict[str, _Delivery] = {}
        self.memory = MemoryReclaimer()
        self._sweeper: asyncio.Task | None = None

    # -- API ------------------------------------------------------------------------------

    async def publish(self, flow_id: str, url: str, messages: list[dict[str, Any]], final: bool = False) -> None:
        delivery = self.flows.get(flow_id)
        if delivery is None or (delivery.log.finished and messages and messages[0]["seq"] == 1):
            delivery = self._open(flow_id, url)
        dropped_before = delivery.log.dropped
        delivery.log.add(messages, time.monotonic())
        metrics.events_dropped(delivery.log.dropped - dropped_before)
        if final:
            delivery.log.finish(time.monotonic())
        delivery.wake.set()

    async def publish_many(self, entries: list[tuple[str, str, list[dict[str, Any]], bool]]) -> None:
        """`publish` for several flows in one call: `(flow_id, url, messages, final)` each."""
        for flow_id, url, messages, final in entries:
            if messages:
                await self.publish(flow_id, url, messages, final)
            elif final:
                await self.finish(flow_id)

    async def finish(self, flow_id: str) -> None:
        delivery = self.flows.get(flow_id)
        if delivery is not None:
            delivery.log.finish(time.monotonic())
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
            "connected": delivery.connected,
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
            "connections": sum(d.connected for d in self.flows.values()),
            "delivering": sum(d.task is not None and not d.task.done() for d in self.flows.values()),
            "events": sum(d.log.last_seq for d in self.flows.values()),
            **process_usage(),
        }

    async def close(self) -> None:
        """Stop every delivery task (tests; the actor simply dies)."""
        tasks = [d.task for d in self.flows.values() if d.task is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def expire(self, now: float) -> int:
        """Forget the flows past retention whose delivery has ended; returns how many."""
        gone = self.logs.expire(now)
        for flow_id in gone:
            del self.flows[flow_id]
        self.memory.released(len(gone), idle=not self.flows)
        return len(gone)

    # -- one flow's delivery --------------------------------------------------------------

    def _open(self, flow_id: str, url: str) -> _Delivery:
        previous = self.flows.pop(flow_id, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        delivery = _Delivery(self.logs.open(flow_id, url))
        loop = asyncio.get_running_loop()
        delivery.task = loop.create_task(self._deliver(delivery), name=f"deliver/{flow_id}")
        self.flows[flow_id] = delivery
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="expire-event-logs")
        return delivery

    async def _deliver(self, delivery: _Delivery) -> None:
        """Connect, deliver, reconnect after losses, until done or given up."""
        failures = 0
        try:
            while True:
                try:
                    await self._session(delivery)
                    return
                except Exception as exc:  # any failure of this connection: back off and resend
                    confirmed_before = delivery.log.delivered_seq
                    await self._connection_lost(delivery, exc)
                    failures = 0 if delivery.log.delivered_seq > confirmed_before else failures + 1
                    if self._should_give_up(delivery):
                        self._give_up(delivery)
                        return
                    await asyncio.sleep(backoff_delay(failures))
        finally:
            await self._close_connection(delivery)
            delivery.log.end_delivery(time.monotonic())

    async def _session(self, delivery: _Delivery) -> None:
        """One connection: send bursts, collect pongs; returns once a finished flow is delivered."""
        event_log = delivery.log
        connection = await connect(
            event_log.url,
            open_timeout=OPEN_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            ping_interval=None,
            compression=None,  # small JSON events: deflate costs both ends more CPU than it saves
        )
        delivery.connection = connection
        delivery.last_error = None
        acks: deque[_Ack] = deque()
        closed = asyncio.ensure_future(connection.wait_closed())
        try:
            while True:
                delivery.wake.clear()
                self._settle(delivery, acks)
                if await self._send_burst(delivery, connection, acks):
                    continue
                if event_log.finished and event_log.all_delivered:
                    return
                await self._wait(delivery, acks, closed)
        finally:
            closed.cancel()

    async def _send_burst(self, delivery: _Delivery, connection: ClientConnection, acks: deque[_Ack]) -> bool:
        """Send what is due within the window, then a ping as the ack barrier."""
        event_log = delivery.log
        batch = event_log.ready(WINDOW - event_log.unconfirmed_count)
        if not batch:
            return False
        for message in batch:
            await connection.send(json.dumps(message, default=str))
        event_log.mark_sent(batch[-1]["seq"])
        pong = await connection.ping()
        acks.append(_Ack(event_log.sent_seq, pong, time.monotonic()))
        return True

    def _settle(self, delivery: _Delivery, acks: deque[_Ack]) -> None:
        """Confirm the bursts whose pong came back (a pong acknowledges every earlier ping)."""
        while acks and acks[0].pong.done():
            ack = acks.popleft()
            if ack.pong.cancelled() or ack.pong.exception() is not None:
                raise ConnectionLost("the connection closed before Backend 2 confirmed")
            now = time.monotonic()
            newly = delivery.log.mark_delivered(ack.seq, now)
            if newly:
                delivery.progress_at = now
                metrics.events_delivered(newly)

    async def _wait(self, delivery: _Delivery, acks: deque[_Ack], closed: asyncio.Future) -> None:
        """Until new events, a pong, a closed connection, an ack timeout or a gap to skip."""
        deadlines = [delivery.log.gap_deadline()]
        if acks:
            deadlines.append(acks[0].sent_at + self.ack_timeout)
        deadline = min((d for d in deadlines if d is not None), default=None)
        woken = asyncio.ensure_future(delivery.wake.wait())
        waiting = {woken, closed, *([asyncio.ensure_future(acks[0].pong)] if acks else [])}
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        now = time.monotonic()
        if closed.done():
            raise ConnectionLost("Backend 2 closed the connection")
        if acks and not acks[0].pong.done() and now >= acks[0].sent_at + self.ack_timeout:
            raise ConnectionLost(f"no pong from Backend 2 for {self.ack_timeout:g} s")
        if delivery.log.skip_gap(now):
            log.warning(
                "flow %s: events missing before seq %d were skipped", delivery.log.flow_id, delivery.log.next_seq
            )

    async def _connection_lost(self, delivery: _Delivery, exc: BaseException) -> None:
        was_connected = delivery.connection is not None
        delivery.reconnects += 1
        metrics.backend2_reconnect()
        delivery.last_error = describe_error(exc, delivery.log.url)
        delivery.log.rewind(time.monotonic())
        await self._close_connection(delivery)
        if was_connected or delivery.reconnects == 1:
            log.info("flow %s: Backend 2 connection lost, retrying: %s", delivery.log.flow_id, delivery.last_error)

    def _should_give_up(self, delivery: _Delivery) -> bool:
        finished_at = delivery.log.finished_at
        if finished_at is None:
            return False
        return time.monotonic() - max(finished_at, delivery.progress_at) > self.give_up_after_finish

    @staticmethod
    def _give_up(delivery: _Delivery) -> None:
        delivery.gave_up = True
        event_log = delivery.log
        undelivered = event_log.last_seq - event_log.delivered_seq
        log.warning(
            "flow %s: gave up delivering to Backend 2; %d events not confirmed stay in the replay log",
            event_log.flow_id,
            undelivered,
        )

    @staticmethod
    async def _close_connection(delivery: _Delivery) -> None:
        connection, delivery.connection = delivery.connection, None
        if connection is not None:
            try:
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT + 1)
            except Exception:  # closing a broken connection: nothing more to do
                pass

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL, max(self.settings.event_retention_seconds, 0.1)))
            self.expire(time.monotonic())


@ray.remote(num_cpus=0, max_concurrency=10_000, max_restarts=-1)
class Backend2Streamer(StreamerCore):
    """The streamer as an async Ray actor (named `backend2-streamer` by `actors.directory`)."""

    def __init__(self) -> None:
        settings = get_settings()
        configure_logging(settings)
        super().__init__(settings)
