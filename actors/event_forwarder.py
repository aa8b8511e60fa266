"""Commits a coordinator's events to the run store, then forwards them to the Backend 2 streamer
actor, batched across flows.

Contract: one `EventOutbox` per coordinator; `outbox.forwarder(flow_id, url)` is a flow's sink
for the scheduler, `outbox.checkpoint(...)` / `outbox.run_update(...)` queue an element's
checkpoint and a run's status for the same flush. Calling them never blocks: they queue and
make sure a flush is scheduled. A flush waits only `FLUSH_TURNS` turns of the loop
(microseconds, no timer), then writes everything queued — events, checkpoints and run updates
of every flow of the coordinator — to the run store in ONE `commit` (a group commit: the store
is hit once per flush, never once per token), and only then hands the events to the streamer in
one `publish_many` call: an event counts as produced once it is in the store. Each event is
encoded to JSON once, as it is queued (`engine.json_codec`; the store and the streamer get
that same text), and fitted then (`engine.event_log.fit_event`: values over
`EVENT_VALUE_MAX_BYTES` in an event over `MAX_EVENT_BYTES` become a marker with size and
preview; the full outputs stay in the element's checkpoint). A commit that fails is retried
`_COMMIT_ATTEMPTS` times; if it still fails, `on_store_failure(flow_ids, message)` is called
(the coordinator stops those runs loudly) and the events are still handed to the streamer, so
Backend 2 hears of it. After each commit `on_committed(flow_ids)` says whose events are now
in the store (readers of a live run wait for it). One call is in flight at a time; what arrives meanwhile goes in the next.
So an idle flow's `flow_started` or LLM token leaves at once (the token relay goal is p99 ≤ 5 ms
to Backend 2), a flow of inline elements is one entry of one call, and under load a thousand
streaming flows share each actor call instead of paying one per token.

Each call's entries are `(flow_id, url, payload, final)`; `payload` is the flow's messages, in
`seq` order, as UTF-8 JSON bytes (a JSON array of the encoded events): what crosses Ray is
bytes, which always pickle, so one flow's unencodable event (nested too deep, circular…) can
never make the batch — the other flows' events — fail. Such an event is
replaced by a stub with the same `type`, `flow_id`, `seq`, `timestamp`, `element_id` and
`data.error.error_type = "serialization_failed"` (a `flow_completed` keeps its `status`), and
logged (flow id and seq, never the event). `final` says the flow will send no more.
`await forwarder.close()` marks the flow final and returns once that has been handed over.

A failed call (the streamer restarting) is retried whole, `_PUBLISH_ATTEMPTS` times in all:
the streamer ignores seqs it already holds, so a retry never duplicates. If a batch of several
flows still fails, each flow is then tried once on its own, so a failure tied to one entry
never drops the others' events; what still fails is logged and dropped for that flow alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.event_log import fit_event
from engine.json_codec import encode
from engine.models import Event
from engine.run_store import Commit, ElementCheckpoint, RunStore, RunStoreError, RunUpdate

log = logging.getLogger(__name__)

FLUSH_TURNS = 16
_PUBLISH_ATTEMPTS = 5
_COMMIT_ATTEMPTS = 3

Entry = tuple[str, str, bytes, bool]


def encode_messages(flow_id: str, messages: list[dict[str, Any]]) -> bytes:
    """The flow's messages as a JSON array; an event that cannot be encoded becomes a stub."""
    return b"[" + b",".join(encode_each(flow_id, messages)) + b"]"


def encode_each(flow_id: str, messages: list[dict[str, Any]]) -> list[bytes]:
    """Each message as JSON; one that cannot be encoded becomes a stub."""
    return [_encoded_or_stub(flow_id, message) for message in messages]


def _encoded_or_stub(flow_id: str, message: dict[str, Any]) -> bytes:
    try:
        return encode(message)
    except Exception as exc:  # RecursionError, ValueError (circular), TypeError, or a failing __str__
        stub = _serialization_stub(flow_id, message)
        log.error(
            "flow %s: event seq %s could not be serialised (%s); sent as serialization_failed",
            flow_id,
            stub["seq"],
            type(exc).__name__,
        )
        return encode(stub)


def message_of(event: Event) -> dict[str, Any]:
    """`event.to_message()` without its deep copy: the envelope, for encoding at once."""
    message: dict[str, Any] = {"type": event.type, "flow_id": event.flow_id, "seq": event.seq}
    message["timestamp"] = event.timestamp
    if event.element_id is not None:
        message["element_id"] = event.element_id
    message["data"] = event.data
    if event.scope is not None:
        message["scope"] = event.scope
    return message


def _serialization_stub(flow_id: str, message: dict[str, Any]) -> dict[str, Any]:
    def scalar(value: Any) -> Any:
        return value if value is None or isinstance(value, bool | int | float) else str(value)[:200]

    stub = {key: scalar(message.get(key)) for key in ("type", "flow_id", "seq", "timestamp", "element_id")}
    stub["flow_id"] = flow_id
    data: dict[str, Any] = {
        "error": {
            "error_type": "serialization_failed",
            "message": "this event could not be serialised (nested too deeply or not JSON); it was replaced",
        }
    }
    status = (message.get("data") or {}).get("status") if isinstance(message.get("data"), dict) else None
    if isinstance(status, str):
        data["status"] = status[:50]
    stub["data"] = data
    return stub


@dataclass
class _Pending:
    url: str
    seqs: list[int] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)  # each event's JSON, in `seq` order
    checkpoints: list[ElementCheckpoint] = field(default_factory=list)
    update: RunUpdate | None = None
    final: bool = False


StoreFailure = Callable[[list[str], str], None]


class EventOutbox:
    def __init__(
        self,
        streamer: Any,
        store: RunStore,
        *,
        max_event_bytes: int,
        value_max_bytes: int,
        on_store_failure: StoreFailure = lambda flow_ids, message: None,
        on_committed: Callable[[list[str]], None] = lambda flow_ids: None,
    ):
        self._streamer = streamer
        self._store = store
        self._max_event_bytes = max_event_bytes
        self._value_max_bytes = value_max_bytes
        self._on_store_failure = on_store_failure
        self._on_committed = on_committed
        self._pending: dict[str, _Pending] = {}
        self._flush: asyncio.Task[None] | None = None
        self._sent_final: dict[str, asyncio.Future[None]] = {}

    def forwarder(self, flow_id: str, url: str) -> EventForwarder:
        return EventForwarder(self, flow_id, url)

    def add(self, flow_id: str, url: str, message: dict[str, Any]) -> None:
        """Queue an event message, encoded (and fitted) now, once."""
        entry = self._entry(flow_id, url)
        entry.seqs.append(message["seq"])
        entry.parts.append(self._encoded(flow_id, message))
        self._schedule()

    def checkpoint(self, flow_id: str, url: str, checkpoint: ElementCheckpoint) -> None:
        self._entry(flow_id, url).checkpoints.append(checkpoint)
        self._schedule()

    def run_update(self, flow_id: str, url: str, update: RunUpdate) -> None:
        self._entry(flow_id, url).update = update
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
                await self._commit(batch)
                self._on_committed(list(batch))
                await self._publish(
                    [(fid, p.url, b"[" + b",".join(p.parts) + b"]", p.final) for fid, p in batch.items()]
                )
                for flow_id, pending in batch.items():
                    done = self._sent_final.get(flow_id)
                    if pending.final and done is not None and not done.done():
                        done.set_result(None)
        finally:
            self._flush = None

    def _encoded(self, flow_id: str, message: dict[str, Any]) -> bytes:
        """The message as JSON; over `max_event_bytes` again with its large values replaced
        (`fit_event`); one that cannot be encoded at all as its stub."""
        part = _encoded_or_stub(flow_id, message)
        if len(part) > self._max_event_bytes:
            fitted, _, _ = fit_event(message, self._max_event_bytes, self._value_max_bytes)
            part = _encoded_or_stub(flow_id, fitted)
        return part

    async def _commit(self, batch: dict[str, _Pending]) -> None:
        commit = Commit()
        for flow_id, pending in batch.items():
            commit.events += [
                (flow_id, seq, part.decode()) for seq, part in zip(pending.seqs, pending.parts, strict=True)
            ]
            commit.checkpoints += [(flow_id, checkpoint) for checkpoint in pending.checkpoints]
            if pending.update is not None:
                commit.runs.append(pending.update)
        if not commit:
            return
        for attempt in range(1, _COMMIT_ATTEMPTS + 1):
            try:
                await self._store.commit(commit)
                return
            except RunStoreError as exc:
                if attempt == _COMMIT_ATTEMPTS:
                    log.error("the run store refused a commit of %d flows: %s", len(batch), exc)
                    self._on_store_failure(list(batch), str(exc))
                    return
                await asyncio.sleep(0.1 * attempt)

    async def _publish(self, entries: list[Entry]) -> None:
        if await self._call(entries, _PUBLISH_ATTEMPTS) or len(entries) == 1:
            return
        for entry in entries:  # the batch keeps failing: no entry may take the others down
            await self._call([entry], 1)

    async def _call(self, entries: list[Entry], attempts: int) -> bool:
        for attempt in range(1, attempts + 1):
            try:
                await self._streamer.publish_many.remote(entries)
                return True
            except Exception as exc:  # the streamer restarting: try again shortly
                if attempt == attempts:
                    flows = ", ".join(flow_id for flow_id, _, _, _ in entries[:5])
                    log.error(
                        "events of %d flows (%s) not handed to the streamer: %s",
                        len(entries),
                        flows,
                        type(exc).__name__,
                    )
                    return False
                await asyncio.sleep(0.2 * attempt)
        return False


class EventForwarder:
    """One flow's sink: the scheduler calls it with each event; `close()` when the flow ended."""

    def __init__(self, outbox: EventOutbox, flow_id: str, url: str):
        self._outbox = outbox
        self._flow_id = flow_id
        self._url = url

    def __call__(self, event: Event) -> None:
        self._outbox.add(self._flow_id, self._url, message_of(event))

    async def close(self) -> None:
        await self._outbox.end(self._flow_id, self._url)
