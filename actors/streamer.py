"""Backend2Streamer: the only place that knows about WebSockets to Backend 2.

Contract:
- `publish(flow_id, url, messages, final=False)` appends events to the flow's log and wakes
  its delivery task; it never waits on the network. `messages` is a list of event dicts or the
  same as UTF-8 JSON bytes (what a coordinator's `EventOutbox` sends). `publish_many` does it
  for several flows in one call, `(flow_id, url, messages, final)` each, every entry in its own
  `try`: an entry that fails (undecodable bytes…) is logged and skipped, never the others.
  `final=True` (or `finish(flow_id)`) says no more events will come; a later publish starting
  again at seq 1 is a new run of the id, one going on after the last seq is a paused run that
  was resumed (its delivery starts again, from the store after the last confirmed seq).
- One delivery task and one WebSocket per flow, so a slow or absent Backend 2 of one flow
  never slows another (no lock is shared across flows). Events go out as compact UTF-8 JSON
  text frames, strictly in `seq` order (the log reorders arrivals and holds each event encoded
  once; see `engine.event_log`).
- Outbound policy (`engine.destinations`): before every connection attempt the URL's host is
  resolved once (`loop.getaddrinfo`; a host written as an IP address is only parsed), every
  address is checked, and the socket is connected
  here to a checked address and handed to websockets (`sock=`), so neither DNS rebinding nor
  a proxy can change where it goes; the Host header and TLS server name stay the URL's.
  Redirects are never followed (websockets cannot follow one on a given socket: the attempt
  fails). A URL or address the policy refuses is never connected to: delivery gives up at once.
- Sizes: no event sent is larger than `MAX_EVENT_BYTES` (its large values are replaced at
  `publish`, see `engine.event_log.fit_event`), below Backend 2's frame limit (websockets'
  default 1 MiB), so one big output can never block a stream. `events(flow_id, after_seq,
  limit)` is paginated: at most `limit` events (default `EVENTS_PAGE_DEFAULT`, at most
  `EVENTS_PAGE_MAX`) and at most `EVENTS_PAGE_MAX_BYTES` encoded bytes past the first event.
- Confirmation: a ping follows the events it confirms; its pong means Backend 2 read every
  frame before it. Pings are spaced so a stream of tokens does not pay one each: a ping goes
  out `ACK_DELAY` seconds after the first event sent since the last ping (rounded up to a
  multiple of `ACK_DELAY`, so the pings of all flows go out together, `ping_time`), or at once
  when the flow has ended and everything is sent, when half the window awaits confirmation, or
  while a refused event is being looked for. At most `WINDOW` events are unconfirmed at a time,
  so a slow reader is never taken for a dead one; a pong missing for `ACK_TIMEOUT` seconds is.
- A lost connection is retried with exponential backoff and jitter (at most
  `RECONNECT_MAX_DELAY` apart) and delivery resumes after the last event confirmed at least
  `RESEND_GRACE` seconds before the loss: a few events may arrive twice, and Backend 2 dedupes
  them by `seq` (contiguous per flow). Nothing is skipped but what the bounded queue dropped.
  Retries are bounded: after `BACKEND2_MAX_CONNECT_ATTEMPTS` consecutive attempts that
  confirmed nothing, delivery of the flow gives up for good (`gave_up`; later events of the
  flow stay readable through `events` only).
- A finished flow's connection is closed once everything is confirmed, or when delivery made
  no progress for `give_up_after_finish` seconds after the end (`gave_up` in the state).
- Retention: a flow is forgotten `EVENT_RETENTION_SECONDS` after its end whatever its delivery
  state (a still running delivery — a slow Backend 2 that answers pings — is cut off then).
  Each log holds at most `EVENT_LOG_MAX_FLOW_BYTES` (first event + latest ones, `evicted`
  counts the others) and all logs at most `EVENT_LOG_MAX_TOTAL_BYTES`: beyond it finished
  flows are forgotten, those already delivered and the oldest first. Once Backend 2 confirmed
  every event of a finished flow, its log drops its events and keeps its counters (`released`
  in the state): the run store holds them. A paused flow (its last event `flow_paused`) is
  forgotten once delivered but for the seq Backend 2 has (an int per paused flow), from which
  its resumed run's delivery goes on.
- `delivery_state`'s `last_error` says only "could not deliver to Backend 2" (or "… refused by
  the outbound policy"); the detail goes to the operator's log, with every URL in it reduced
  to scheme://host:port/path and control characters escaped. Logs and states never contain a
  URL's credentials or query; events are never logged.
- Durable delivery (with a run store, `engine.run_store`): coordinators commit events to the
  store before publishing them, so the store holds everything produced. The streamer records
  the last seq Backend 2 confirmed per flow in the store (batched, every
  `CONFIRM_FLUSH_INTERVAL` s), and a restarted streamer resumes every open delivery of the
  store from there (`resume_open_deliveries`, run by its first call; only the runs the store
  gives to its coordinator, when the pool has several streamers): Backend 2 may see a few
  events again (dedupe by seq), never a gap. A publish for a flow it does not know whose first
  seq is not 1 is backfilled from the store first.
- A message Backend 2 refuses (it closes the connection with 1003, 1007 or 1009) is found and
  skipped: after such a close the events sent then are resent one per burst; one refused
  `MAX_REFUSALS` times on its own is recorded (`refused_seqs` in the delivery state, a warning
  in the log) and skipped; it never blocks the flow's later events.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ray
from websockets.asyncio.client import ClientConnection, connect
from websockets.protocol import State

from actors import metrics
from actors.usage import MemoryReclaimer, process_usage
from engine.destinations import Destination, DestinationError, OutboundPolicy, parse_ws_url, redact_text, safe_url
from engine.event_log import EventLogStore, FlowEventLog, Message
from engine.json_codec import decode
from engine.logging_setup import configure_logging
from engine.run_store import RunStore
from engine.settings import Settings, get_settings
from services.run_store import open_run_store
from services.sandbox.isolation import make_undumpable

log = logging.getLogger(__name__)

RECONNECT_FIRST_DELAY = 0.1
RECONNECT_MAX_DELAY = 1.0
GIVE_UP_AFTER_FINISH = 30.0
ACK_TIMEOUT = 30.0
WINDOW = 100
ACK_DELAY = 0.25  # seconds a sent event may wait for its ping (a reconnection resends the last 1 s anyway)
OPEN_TIMEOUT = 3.0
CLOSE_TIMEOUT = 1.0
SWEEP_INTERVAL = 5.0
EVENTS_PAGE_DEFAULT = 500
EVENTS_PAGE_MAX = 5_000
CONFIRM_FLUSH_INTERVAL = 0.25
MAX_REFUSALS = 3
REFUSAL_CODES = frozenset({1003, 1007, 1009})  # unsupported data, invalid payload, message too big
DELIVERY_FAILED = "could not deliver to Backend 2"
POLICY_REFUSED = "could not deliver to Backend 2: refused by the outbound policy"


class ConnectionLost(ConnectionError):
    """Backend 2 closed the connection or stopped answering pings."""


class OutboundRefused(ConnectionError):
    """The outbound policy refuses the URL or one of the addresses it resolves to."""


@dataclass
class _Ack:
    seq: int
    pong: asyncio.Future[float]  # resolved by the pong that answers the burst's ping
    sent_at: float


@dataclass
class _Delivery:
    log: FlowEventLog
    destination: Destination | None = None  # None: the URL is not acceptable
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    connection: ClientConnection | None = None
    reconnects: int = 0
    attempts: int = 0  # connection attempts made (resolved, checked, connected or not)
    last_error: str | None = None
    gave_up: bool = False
    progress_at: float = field(default_factory=time.monotonic)
    refusals: dict[int, int] = field(default_factory=dict)  # seq → times Backend 2 refused it
    refused_seqs: list[int] = field(default_factory=list)  # skipped after MAX_REFUSALS
    careful_until: int = 0  # after a refusal: one event per burst up to this seq, to find the refused one
    unpinged_since: float | None = None  # when the first event sent since the last ping was sent
    paused: bool = False  # the events so far end with `flow_paused`: the run may go on later

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.state is State.OPEN


def describe_error(exc: BaseException, url: str) -> str:
    """For the operator's log: every URL reduced to scheme://host:port/path, controls escaped."""
    return redact_text(f"{type(exc).__name__}: {exc}".replace(url, safe_url(url)))


def ping_time(first_unpinged: float) -> float:
    """When the ping confirming an event sent at `first_unpinged` is due: `ACK_DELAY` later,
    rounded up to a multiple of `ACK_DELAY`, so the pings of all streaming flows go out at the
    same moments — one wake-up of the loop for all, their pongs read together."""
    return math.ceil((first_unpinged + ACK_DELAY) / ACK_DELAY) * ACK_DELAY


async def _addresses(destination: Destination) -> list[Any]:
    """The host's TCP addresses (`getaddrinfo`'s tuples): one written as an address needs no
    lookup, so it is read at once (asyncio's own connect does the same) instead of in the
    loop's thread pool; a name is resolved there."""
    if destination.literal is not None:
        flags = socket.AI_NUMERICHOST  # parsing only: never a DNS query
        return socket.getaddrinfo(destination.host, destination.port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP, flags)
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(destination.host, destination.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)


def backoff_delay(attempt: int) -> float:
    """Exponential, capped, with jitter (50-100 % of the nominal delay)."""
    nominal = min(RECONNECT_FIRST_DELAY * 2.0 ** min(attempt, 16), RECONNECT_MAX_DELAY)
    return nominal * random.uniform(0.5, 1.0)


class StreamerCore:
    """The streamer's logic; `Backend2Streamer` is this class as a Ray actor."""

    def __init__(
        self,
        settings: Settings,
        give_up_after_finish: float = GIVE_UP_AFTER_FINISH,
        ack_timeout: float = ACK_TIMEOUT,
        extra_denied_ports: Iterable[int] = (),
        store: RunStore | None = None,
        coordinator: int | None = None,
    ):
        self.settings = settings
        self.store = store
        self._coordinator = coordinator  # whose runs of the store this streamer delivers (None: all)
        self._delivered_count = 0  # events confirmed since the delivered-events metric was last recorded
        self._ready: asyncio.Task[int] | None = None
        self._confirmed: dict[str, int] = {}  # flow id → delivered seq not yet written to the store
        self._confirm_flush: asyncio.Task[None] | None = None
        self._opening: dict[str, asyncio.Future[_Delivery]] = {}  # flows being backfilled from the store
        self.give_up_after_finish = give_up_after_finish
        self.ack_timeout = ack_timeout
        self.policy = OutboundPolicy.from_settings(settings, extra_denied_ports)
        self.logs = EventLogStore(
            settings.event_retention_seconds,
            settings.event_buffer_limit,
            max_event_bytes=settings.max_event_bytes,
            value_max_bytes=settings.event_value_max_bytes,
            max_flow_bytes=settings.event_log_max_flow_bytes,
            max_total_bytes=settings.event_log_max_total_bytes,
        )
        self.flows: dict[str, _Delivery] = {}
        self._paused_at: dict[str, int] = {}  # paused flows delivered in full: the last seq Backend 2 has
        self.memory = MemoryReclaimer()
        self._sweeper: asyncio.Task[None] | None = None

    # -- API ------------------------------------------------------------------------------

    async def _ready_once(self) -> None:
        """The first call opens the store and resumes its open deliveries (once)."""
        if self.store is None:
            return
        ready = self._ready
        if ready is not None and ready.done() and not ready.cancelled() and ready.exception() is None:
            return  # resumed already: the common case, without a shield per call
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self.resume_open_deliveries())
        try:
            await asyncio.shield(self._ready)
        except Exception:
            log.exception("the streamer could not resume deliveries from the run store")
            self._ready = None
            raise

    async def resume_open_deliveries(self) -> int:
        """Deliver what the store holds beyond each open flow's last confirmed seq; how many flows."""
        assert self.store is not None
        await self.store.open()
        opened = 0
        for open_delivery in await self.store.open_deliveries():
            if open_delivery.flow_id in self.flows or self._coordinator not in (None, open_delivery.coordinator):
                continue
            delivery = await self._open_from_store(open_delivery.flow_id, open_delivery.backend2_ws_url)
            if open_delivery.finished:
                delivery.log.finish(time.monotonic())
            opened += 1
        return opened

    async def _open_from_store(self, flow_id: str, url: str) -> _Delivery:
        """A delivery resumed after the seq Backend 2 last confirmed, the events since loaded
        from the store; concurrent callers for one flow share one backfill."""
        opening = self._opening.get(flow_id)
        if opening is None:
            opening = self._opening[flow_id] = asyncio.ensure_future(self._backfill(flow_id, url))
            opening.add_done_callback(lambda _: self._opening.pop(flow_id, None))
        return await asyncio.shield(opening)

    async def _backfill(self, flow_id: str, url: str) -> _Delivery:
        assert self.store is not None
        record = await self.store.get_run(flow_id)
        after = record.delivered_seq if record is not None else 0
        delivery = self._open(flow_id, url, start_after=after)
        while True:
            page = [decode(text) for text in await self.store.events(flow_id, after, 500)]
            if not page:
                break
            self.logs.add(delivery.log, page, time.monotonic())
            after = page[-1]["seq"]
        delivery.wake.set()
        return delivery

    async def _fill_gap(self, delivery: _Delivery, before: int) -> None:
        """Events missing before seq `before` — the last ones a crashed coordinator committed but
        did not publish — read from the store (where every published event's predecessors are)."""
        assert self.store is not None
        after = delivery.log.last_seq
        texts = await self.store.events(delivery.log.flow_id, after, before - 1 - after)
        if texts:
            self.logs.add(delivery.log, [decode(text) for text in texts], time.monotonic())

    async def publish(self, flow_id: str, url: str, messages: list[Message] | bytes, final: bool = False) -> None:
        await self._ready_once()
        batch: list[Message] = decode(messages) if isinstance(messages, bytes | bytearray) else messages
        if not batch:
            if final:
                await self.finish(flow_id)
            return
        delivery = self.flows.get(flow_id)
        paused_at = self._paused_at.pop(flow_id, None)
        if delivery is None and paused_at is not None and batch[0]["seq"] > paused_at:  # a paused run goes on
            delivery = self._open(flow_id, url, start_after=paused_at)
        elif delivery is not None and delivery.log.finished and batch[0]["seq"] > 1:  # resumed before all was confirmed
            self._forget(flow_id)
            delivery = None if self.store is not None else self._open(flow_id, url, start_after=batch[0]["seq"] - 1)
        if flow_id in self._opening or (delivery is None and batch[0]["seq"] > 1 and self.store is not None):
            delivery = await self._open_from_store(flow_id, url)  # a streamer restarted mid-flow
        elif delivery is None or (delivery.log.finished and batch[0]["seq"] == 1):
            delivery = self._open(flow_id, url)
        elif self.store is not None and batch[0]["seq"] > delivery.log.next_seq:
            await self._fill_gap(delivery, batch[0]["seq"])
        dropped_before = delivery.log.dropped
        self.logs.add(delivery.log, batch, time.monotonic())
        metrics.events_dropped(delivery.log.dropped - dropped_before)
        if final:
            delivery.paused = batch[-1].get("type") == "flow_paused"
            delivery.log.finish(time.monotonic())
        delivery.wake.set()
        for gone in self.logs.over_total():
            log.warning("flow %s: event log dropped: EVENT_LOG_MAX_TOTAL_BYTES exceeded", gone)
            self._forget(gone)

    async def publish_many(self, entries: list[tuple[str, str, list[Message] | bytes, bool]]) -> None:
        """`publish` for several flows in one call: `(flow_id, url, messages, final)` each;
        one entry's failure is logged and never affects another."""
        for flow_id, url, messages, final in entries:
            try:
                await self.publish(flow_id, url, messages, final)
            except Exception as exc:  # this flow's entry alone is lost
                log.error("flow %s: events not accepted: %s", flow_id, type(exc).__name__)

    async def finish(self, flow_id: str) -> None:
        delivery = self.flows.get(flow_id)
        if delivery is not None:
            delivery.log.finish(time.monotonic())
            delivery.wake.set()

    async def events(
        self, flow_id: str, after_seq: int = 0, limit: int = EVENTS_PAGE_DEFAULT
    ) -> list[dict[str, Any]] | None:
        """A page of the log after `after_seq`: at most `limit` (1…`EVENTS_PAGE_MAX`) events and
        `EVENTS_PAGE_MAX_BYTES`; the next page starts after the last seq returned."""
        delivery = self.flows.get(flow_id)
        if delivery is None:
            return None
        limit = min(max(int(limit), 1), EVENTS_PAGE_MAX)
        return delivery.log.after(after_seq, limit, self.settings.events_page_max_bytes)

    async def delivery_state(self, flow_id: str) -> dict[str, Any] | None:
        delivery = self.flows.get(flow_id)
        if delivery is None:
            return None
        return {
            **delivery.log.state(),
            "connected": delivery.connected,
            "reconnects": delivery.reconnects,
            "connect_attempts": delivery.attempts,
            "last_error": delivery.last_error,
            "gave_up": delivery.gave_up,
            "refused_seqs": list(delivery.refused_seqs),
        }

    async def stats(self) -> dict[str, Any]:
        await self._ready_once()
        return {
            "flows": len(self.flows),
            "connections": sum(d.connected for d in self.flows.values()),
            "delivering": sum(d.task is not None and not d.task.done() for d in self.flows.values()),
            "events": sum(d.log.last_seq for d in self.flows.values()),
            **process_usage(),
        }

    async def delivering(self) -> int:
        """How many flows still have events to deliver (or a connection to close); at 0 the
        confirmations are written to the store first (a coordinator leaving the pool waits for 0)."""
        busy = len(self._opening) + sum(d.task is not None and not d.task.done() for d in self.flows.values())
        if busy == 0 and self._confirmed:
            await self._write_confirmations()
        return busy

    async def close(self) -> None:
        """Stop every delivery task (tests; the actor simply dies)."""
        tasks = [d.task for d in self.flows.values() if d.task is not None]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._write_confirmations()

    def expire(self, now: float) -> int:
        """Forget the flows past retention, stopping a delivery still running; returns how many."""
        gone = self.logs.expire(now)
        for flow_id in gone:
            self._forget(flow_id)
        self.memory.released(len(gone), idle=not self.flows)
        return len(gone)

    def _forget(self, flow_id: str) -> None:
        self.logs.forget(flow_id)
        delivery = self.flows.pop(flow_id, None)
        if delivery is not None and delivery.task is not None and not delivery.task.done():
            log.info("flow %s: delivery stopped: the flow's retention ended", flow_id)
            delivery.task.cancel()

    # -- one flow's delivery --------------------------------------------------------------

    def _open(self, flow_id: str, url: str, start_after: int = 0) -> _Delivery:
        previous = self.flows.pop(flow_id, None)
        if previous is not None and previous.task is not None:
            previous.task.cancel()
        delivery = _Delivery(self.logs.open(flow_id, url))
        if start_after:
            delivery.log.start_after(start_after)
        try:
            delivery.destination = parse_ws_url(url)
        except DestinationError as exc:
            log.warning("flow %s: Backend 2 URL refused: %s", flow_id, exc)
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
                except OutboundRefused as exc:  # never retried: the URL will not become acceptable
                    delivery.last_error = POLICY_REFUSED
                    delivery.gave_up = True
                    log.warning(
                        "flow %s: not connecting to %s: %s",
                        delivery.log.flow_id,
                        safe_url(delivery.log.url),
                        redact_text(str(exc)),
                    )
                    return
                except Exception as exc:  # any failure of this connection: back off and resend
                    confirmed_before = delivery.log.delivered_seq
                    refused = await self._connection_lost(delivery, exc)
                    # a refusal is Backend 2 answering (bounded: each event is skipped after MAX_REFUSALS)
                    progressed = refused or delivery.log.delivered_seq > confirmed_before
                    failures = 0 if progressed else failures + 1
                    if refused:
                        delivery.progress_at = time.monotonic()
                    if failures >= self.settings.backend2_max_connect_attempts or self._should_give_up(delivery):
                        self._give_up(delivery, describe_error(exc, delivery.log.url))
                        return
                    await asyncio.sleep(backoff_delay(failures))
        finally:
            await self._close_connection(delivery)
            delivery.log.end_delivery(time.monotonic())
            if (
                delivery.log.finished
                and delivery.log.all_delivered
                and self.flows.get(delivery.log.flow_id) is delivery
            ):
                self._delivered(delivery)

    def _delivered(self, delivery: _Delivery) -> None:
        """Every event of a finished (or paused) flow confirmed: the store has them all. A
        finished flow keeps its counters until retention; a paused one is forgotten (its resume
        opens its delivery again from the store)."""
        if delivery.paused:  # called by the delivery's own task as it ends: nothing to stop
            self._paused_at[delivery.log.flow_id] = delivery.log.last_seq
            self.logs.forget(delivery.log.flow_id)
            self.flows.pop(delivery.log.flow_id, None)
        else:
            self.logs.release(delivery.log.flow_id)

    async def _session(self, delivery: _Delivery) -> None:
        """One connection: send bursts, collect pongs; returns once a finished flow is delivered."""
        event_log = delivery.log
        sock = await self._checked_socket(delivery)
        try:
            connection = await connect(
                event_log.url,
                sock=sock,  # connected to a checked address; a redirect cannot be followed on it
                proxy=None,
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
                ping_interval=None,
                compression=None,  # small JSON events: deflate costs both ends more CPU than it saves
            )
        except BaseException:
            sock.close()
            raise
        delivery.connection = connection
        delivery.last_error = None
        delivery.unpinged_since = None
        acks: deque[_Ack] = deque()
        closed = asyncio.ensure_future(connection.wait_closed())
        closed.add_done_callback(lambda _: delivery.wake.set())
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

    async def _checked_socket(self, delivery: _Delivery) -> socket.socket:
        """Resolve once, check every address, connect a socket to the first that answers."""
        delivery.attempts += 1
        destination = delivery.destination
        if destination is None:
            raise OutboundRefused("the URL is not an acceptable ws:// or wss:// URL")
        reason = self.policy.check_url(destination)
        if reason is not None:
            raise OutboundRefused(reason)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(OPEN_TIMEOUT):
            infos = await _addresses(destination)
        if not infos:
            raise OSError(f"{destination.host} resolves to no address")
        for *_, sockaddr in infos:
            address = str(sockaddr[0])  # an IPv4 or IPv6 address: a TCP lookup gives no other family
            reason = self.policy.check_address(destination, address)
            if reason is not None:
                raise OutboundRefused(f"{destination.host} resolves to {address}: {reason}")
        error: BaseException | None = None
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    await loop.sock_connect(sock, sockaddr)
                return sock
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError | TimeoutError):
                    raise
                error = exc
        assert error is not None
        raise error

    async def _send_burst(self, delivery: _Delivery, connection: ClientConnection, acks: deque[_Ack]) -> bool:
        """Send what is due within the window (each event's JSON as encoded when it was logged),
        then a ping, the ack barrier, once one is due (`_ping_due`). Whether events were sent."""
        event_log = delivery.log
        careful = delivery.careful_until > event_log.delivered_seq
        texts, last = event_log.due((1 if careful else WINDOW) - event_log.unconfirmed_count)
        for text in texts:
            await connection.send(text, text=True)
        now = time.monotonic()
        if texts:
            event_log.mark_sent(last)
            if delivery.unpinged_since is None:
                delivery.unpinged_since = now
        if delivery.unpinged_since is not None and self._ping_due(delivery, careful, now):
            pong = asyncio.ensure_future(await connection.ping())  # the future itself (ping returns one)
            pong.add_done_callback(lambda _: delivery.wake.set())
            acks.append(_Ack(event_log.sent_seq, pong, now))
            delivery.unpinged_since = None
        return bool(texts)

    @staticmethod
    def _ping_due(delivery: _Delivery, careful: bool, now: float) -> bool:
        """A ping confirms every event sent before it: one goes out `ACK_DELAY` after the first
        event it will confirm, or at once when finding a refused event, when half the window
        awaits confirmation, or when the flow has ended and everything is sent."""
        event_log = delivery.log
        assert delivery.unpinged_since is not None
        return (
            careful
            or now >= ping_time(delivery.unpinged_since)
            or event_log.unconfirmed_count >= WINDOW // 2
            or (event_log.finished and event_log.pending_count == 0)
        )

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
                self._record_confirmation(delivery.log.flow_id, delivery.log.delivered_seq, newly)

    def _record_confirmation(self, flow_id: str, seq: int, newly: int) -> None:
        """Noted now; the store's delivered seq and the delivered-events metric are written
        together, every `CONFIRM_FLUSH_INTERVAL` s."""
        self._delivered_count += newly
        if self.store is not None:
            self._confirmed[flow_id] = seq
        if self._confirm_flush is None:
            self._confirm_flush = asyncio.get_running_loop().create_task(self._flush_confirmations())

    async def _flush_confirmations(self) -> None:
        try:
            await asyncio.sleep(CONFIRM_FLUSH_INTERVAL)
            await self._write_confirmations()
        finally:
            self._confirm_flush = None

    async def _write_confirmations(self) -> None:
        delivered, self._delivered_count = self._delivered_count, 0
        metrics.events_delivered(delivered)
        confirmed, self._confirmed = self._confirmed, {}
        if self.store is None:
            return
        try:
            await self.store.mark_delivered_many(confirmed)  # one write for every flow confirmed meanwhile
        except Exception as exc:  # a lost confirmation only means a few events are resent after a restart
            log.warning("the delivered seqs of %d flows could not be recorded: %s", len(confirmed), exc)

    async def _wait(self, delivery: _Delivery, acks: deque[_Ack], closed: asyncio.Future[None]) -> None:
        """Until new events, a pong, a closed connection (each sets `wake`), an ack timeout, a
        ping due or a gap to skip (a timer sets it)."""
        deadlines = [delivery.log.gap_deadline()]
        if acks:
            deadlines.append(acks[0].sent_at + self.ack_timeout)
        if delivery.unpinged_since is not None:
            deadlines.append(ping_time(delivery.unpinged_since))
        deadline = min((d for d in deadlines if d is not None), default=None)
        loop = asyncio.get_running_loop()
        timer = None if deadline is None else loop.call_later(max(deadline - time.monotonic(), 0), delivery.wake.set)
        try:
            await delivery.wake.wait()
        finally:
            if timer is not None:
                timer.cancel()
        now = time.monotonic()
        if closed.done():
            raise ConnectionLost("Backend 2 closed the connection")
        if acks and not acks[0].pong.done() and now >= acks[0].sent_at + self.ack_timeout:
            raise ConnectionLost(f"no pong from Backend 2 for {self.ack_timeout:g} s")
        if delivery.log.skip_gap(now):
            log.warning(
                "flow %s: events missing before seq %d were skipped", delivery.log.flow_id, delivery.log.next_seq
            )

    def _note_refusal(self, delivery: _Delivery) -> bool:
        """Backend 2 closed with a refusal code: count it against the first unconfirmed event,
        and skip that event after `MAX_REFUSALS`. Returns whether it was a refusal."""
        connection = delivery.connection
        code = connection.close_code if connection is not None else None
        if code not in REFUSAL_CODES:
            return False
        event_log = delivery.log
        if delivery.careful_until <= event_log.delivered_seq:  # which event of the burst? send one at a time
            delivery.careful_until = event_log.sent_seq
            return True
        seq = event_log.delivered_seq + 1
        delivery.refusals[seq] = delivery.refusals.get(seq, 0) + 1
        if delivery.refusals[seq] >= MAX_REFUSALS:
            delivery.refused_seqs.append(seq)
            event_log.skip(seq, time.monotonic())
            log.warning(
                "flow %s: Backend 2 refused event seq %d %d times (close code %d); it was skipped",
                event_log.flow_id,
                seq,
                MAX_REFUSALS,
                code,
            )
        return True

    async def _connection_lost(self, delivery: _Delivery, exc: BaseException) -> bool:
        """Count the loss, rewind what is due again, close; returns whether Backend 2 refused a message."""
        refused = self._note_refusal(delivery)
        was_connected = delivery.connection is not None
        delivery.reconnects += 1
        metrics.backend2_reconnect()
        delivery.last_error = DELIVERY_FAILED
        delivery.log.rewind(time.monotonic())
        await self._close_connection(delivery)
        if was_connected or delivery.reconnects == 1:
            log.info(
                "flow %s: Backend 2 connection to %s lost, retrying: %s",
                delivery.log.flow_id,
                safe_url(delivery.log.url),
                describe_error(exc, delivery.log.url),
            )
        return refused

    def _should_give_up(self, delivery: _Delivery) -> bool:
        finished_at = delivery.log.finished_at
        if finished_at is None:
            return False
        return time.monotonic() - max(finished_at, delivery.progress_at) > self.give_up_after_finish

    @staticmethod
    def _give_up(delivery: _Delivery, detail: str) -> None:
        delivery.gave_up = True
        event_log = delivery.log
        undelivered = event_log.last_seq - event_log.delivered_seq
        log.warning(
            "flow %s: gave up delivering to %s after %d attempts; %d events not confirmed stay in the replay log; "
            "last error: %s",
            event_log.flow_id,
            safe_url(event_log.url),
            delivery.attempts,
            undelivered,
            detail,
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
    """The streamer as an async Ray actor: `backend2-streamer-<index>`, the streamer of
    coordinator `index` (see `actors.coordinator`)."""

    def __init__(self, index: int = 0) -> None:
        make_undumpable()  # nothing of this uid (custom code included) may read its environ or memory
        settings = get_settings()
        configure_logging(settings)
        super().__init__(
            settings,
            extra_denied_ports=_cluster_ports(),
            store=open_run_store(settings),
            coordinator=index,
        )


def _cluster_ports() -> set[int]:
    """The ports this Ray node listens on, as far as this process knows (best effort)."""
    ports: set[int] = set()
    try:
        gcs = ray.get_runtime_context().gcs_address or ""
        if gcs.rpartition(":")[2].isdigit():
            ports.add(int(gcs.rpartition(":")[2]))
    except Exception:  # not in a Ray worker, or an older Ray: the configured ports still apply
        pass
    node = getattr(getattr(ray, "_private", None), "worker", None)
    node = getattr(node, "_global_node", None)
    for name in (
        "metrics_export_port",
        "metrics_agent_port",
        "dashboard_agent_listen_port",
        "node_manager_port",
        "object_manager_port",
        "ray_client_server_port",
    ):
        try:
            value = getattr(node, name, None)
        except Exception:  # a property that needs state this process lacks
            continue
        if isinstance(value, int) and 0 < value < 65536:
            ports.add(value)
    return ports
