"""Event logs of flows for Backend 2: ordering, replay, the bounded delivery queue, retention.

Pure: no I/O, no clock (callers pass `now`, a monotonic time), no Ray.

`FlowEventLog`, one flow:
- `add(messages, now)` accepts event messages (dicts with an int `seq`, as made by
  `Event.to_message()`) in any order. They join the log only in `seq` order 1, 2, 3…; later
  ones wait in a reorder buffer, duplicates are ignored. A gap that stays open `gap_timeout`
  seconds (a publish lost when the streamer restarted) is skipped by `skip_gap(now)` and
  counted in `skipped`; so is one whose waiting events exceed `buffer_limit`.
- Each event is encoded once, as it is added (`encode_event`: compact UTF-8 JSON, what goes
  over the WebSocket), and the log holds that encoding only; reading dicts back decodes it.
- `after(seq)` is the replay: every logged event with a higher seq, in order.
- Delivery: `due(limit)` gives the encoded events due to Backend 2, oldest first, and the seq
  of the last (`ready(limit)` the same decoded). `mark_sent(seq)`
  records a hand-over to the connection, `mark_delivered(seq, now)` a confirmed one (the
  highest is `delivered_seq`). `rewind(now)` after a lost connection makes due again every
  event after the last one confirmed at least `resend_grace` seconds ago — Backend 2 may have
  lost what it had received but not yet processed — so Backend 2 sees each event at least
  once and dedupes by `seq`.
- The delivery queue is bounded: when more than `buffer_limit` events are neither confirmed
  nor dropped, the oldest of them leave the queue (counted in `dropped`), never the log;
  adding never blocks.

- Sizes: with `max_event_bytes`, `add` passes every event through `fit_event` (`fit_encoded`:
  the same, encoded), so no logged event encodes to more than that: values of `data` (and of `data.outputs` / `data.inputs`) larger than
  `value_max_bytes` — and then the largest others until the event fits — are replaced by
  `{"truncated": true, "bytes": N, "sha256": H, "preview": P}` (N and H of the value's
  encoded JSON, P its first `PREVIEW_CHARS` characters);
  `truncated` counts such events. `after(seq, limit, max_bytes)` is the paginated replay:
  at most `limit` events and, past the first, at most `max_bytes` encoded bytes.
- Retention by size: `retained_bytes` is the encoded size of what the log holds. Over
  `max_bytes` (the per-flow cap) the log keeps its first event and its latest ones and drops
  the oldest in between (down to 3/4 of the cap, so trimming is amortised) — counted in
  `evicted`; an event dropped so before it was sent is never delivered.

`EventLogStore`, many flows: `open` (a new log; a reused flow id replaces the old one),
`add(log, messages, now)` adds and keeps `total_bytes`, `finish(flow_id, now)` starts the
retention clock, `expire(now)` forgets every log whose flow ended `retention` seconds ago,
whatever its delivery state (a hard deadline: the caller stops the delivery), and
`over_total()` lists the logs to drop while `total_bytes` exceeds `max_total_bytes`: finished
flows only, those whose delivery ended first, oldest end first.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.json_codec import decode, encode

Message = dict[str, Any]
_NESTED_VALUES = ("outputs", "inputs")  # `data` keys whose own values are replaced one by one


PREVIEW_CHARS = 200  # of a replaced value's JSON, kept in its marker


def encode_event(message: Any) -> bytes:
    """The event as sent to Backend 2: compact UTF-8 JSON (`engine.json_codec.encode`)."""
    return encode(message)


def _placeholder(encoded: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(encoded).hexdigest()
    preview = encoded[: PREVIEW_CHARS * 4].decode("utf-8", "ignore")[:PREVIEW_CHARS]
    return {"truncated": True, "bytes": len(encoded), "sha256": digest, "preview": preview}


def fit_event(message: Message, max_bytes: int, value_max_bytes: int) -> tuple[Message, int, bool]:
    """`(event, encoded size, truncated)`: the event, its large values replaced if it is over
    `max_bytes`. An event that cannot be encoded at all keeps only its envelope."""
    try:
        size = len(encode_event(message))
    except (ValueError, TypeError, RecursionError):
        return _envelope_only(message, "the event could not be encoded"), -1, True
    if size <= max_bytes:
        return message, size, False
    fitted = dict(message)
    data = message.get("data")
    if isinstance(data, dict):
        fitted["data"] = new_data = dict(data)
        candidates: list[tuple[int, str, str | None, bytes]] = []  # (size, key, nested key, encoded)
        for key, value in data.items():
            if key in _NESTED_VALUES and isinstance(value, dict):
                new_data[key] = dict(value)
                for nested, inner in value.items():
                    encoded = encode_event(inner)
                    candidates.append((len(encoded), key, nested, encoded))
            else:
                encoded = encode_event(value)
                candidates.append((len(encoded), key, None, encoded))
        candidates.sort(key=lambda c: c[0], reverse=True)
        for value_size, key, nested, encoded in candidates:
            if value_size <= value_max_bytes and size <= max_bytes:
                break
            replacement = _placeholder(encoded)
            if nested is None:
                new_data[key] = replacement
            else:
                new_data[key][nested] = replacement
            size -= value_size - len(encode_event(replacement))
    size = len(encode_event(fitted))
    if size > max_bytes:  # a huge envelope (never from the scheduler): keep the envelope alone
        fitted = _envelope_only(message, "the event was too large")
        size = len(encode_event(fitted))
    return fitted, size, True


def fit_encoded(message: Message, max_bytes: int, value_max_bytes: int) -> tuple[bytes, bool]:
    """`(encoded event, truncated)`: `fit_event`'s event as `encode_event` encodes it, encoded
    once when it fits as it is (the common case)."""
    try:
        encoded = encode_event(message)
    except (ValueError, TypeError, RecursionError):
        return encode_event(_envelope_only(message, "the event could not be encoded")), True
    if len(encoded) <= max_bytes:
        return encoded, False
    fitted, _, truncated = fit_event(message, max_bytes, value_max_bytes)
    return encode_event(fitted), truncated


def _envelope_only(message: Message, why: str) -> Message:
    kept: Message = {k: message[k] for k in ("type", "flow_id", "seq", "timestamp", "element_id") if k in message}
    kept = {k: v if isinstance(v, int | float) or v is None else str(v)[:200] for k, v in kept.items()}
    kept["seq"] = message["seq"]
    kept["data"] = {"truncated": True, "error": {"error_type": "event_too_large", "message": why}}
    return kept


@dataclass
class FlowEventLog:
    flow_id: str
    url: str
    buffer_limit: int = 10_000
    gap_timeout: float = 2.0
    resend_grace: float = 1.0
    max_event_bytes: int | None = None
    value_max_bytes: int = 64 * 1024
    max_bytes: int | None = None
    next_seq: int = 1
    sent_seq: int = 0
    delivered_seq: int = 0
    dropped: int = 0
    skipped: int = 0
    finished_at: float | None = None
    delivery_ended_at: float | None = None
    retained_bytes: int = 0
    released: bool = False  # delivered in full and its events dropped (`release`)
    evicted: int = 0
    truncated: int = 0
    # The logged events, in seq order, as parallel lists: each event's seq and its encoded JSON
    # (`encode_event`: what goes over the WebSocket, encoded once, at `add`).
    _seqs: list[int] = field(default_factory=list)
    _texts: list[bytes] = field(default_factory=list)
    _early: dict[int, bytes] = field(default_factory=dict)
    _gap_since: float | None = None
    _skip_to: int = 0  # events up to this seq left the delivery queue (dropped)
    _confirmations: deque[tuple[float, int]] = field(default_factory=deque)
    _confirmed_before: int = 0  # delivered_seq as of `resend_grace` seconds ago

    # -- log and replay -------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    @property
    def events(self) -> list[Message]:
        """Every logged event, decoded (tests and operators; delivery uses `due`)."""
        return [decode(text) for text in self._texts]

    def add(self, messages: list[Message], now: float = 0.0) -> None:
        for message in messages:
            seq = message["seq"]
            if seq >= self.next_seq and seq not in self._early:
                self._early[seq] = self._encode(message)
        self._join_early()
        self._trim()
        if self._early and self._gap_since is None:
            self._gap_since = now
        if len(self._early) > self.buffer_limit:
            self._skip_first_gap(now)
        self._bound_queue()

    def _encode(self, message: Message) -> bytes:
        if self.max_event_bytes is None:
            text = encode_event(message)
        else:
            text, truncated = fit_encoded(message, self.max_event_bytes, self.value_max_bytes)
            self.truncated += truncated
        self.retained_bytes += len(text)
        return text

    def _join_early(self) -> None:
        while self.next_seq in self._early:
            text = self._early.pop(self.next_seq)
            self._seqs.append(self.next_seq)
            self._texts.append(text)
            self.next_seq += 1
        if not self._early:
            self._gap_since = None

    def gap_deadline(self) -> float | None:
        """When the open gap (if any) will be given up."""
        return None if self._gap_since is None else self._gap_since + self.gap_timeout

    def skip_gap(self, now: float) -> bool:
        """Give up the missing seqs before the waiting events once the gap is old enough."""
        deadline = self.gap_deadline()
        if deadline is None or now < deadline:
            return False
        self._skip_first_gap(now)
        self._bound_queue()
        return True

    def _skip_first_gap(self, now: float) -> None:
        first = min(self._early)
        self.skipped += first - self.next_seq
        self.next_seq = first
        self._gap_since = None
        self._join_early()
        if self._early:
            self._gap_since = now

    def after(self, seq: int, limit: int | None = None, max_bytes: int | None = None) -> list[Message]:
        """The events after `seq`: at most `limit`, and past the first at most `max_bytes`."""
        start = self._index_after(seq)
        end = len(self._texts) if limit is None else min(len(self._texts), start + max(limit, 0))
        if max_bytes is not None:
            total = 0
            for index in range(start, end):
                total += len(self._texts[index])
                if total > max_bytes and index > start:
                    end = index
                    break
        return [decode(text) for text in self._texts[start:end]]

    def _trim(self) -> None:
        """Over the per-flow cap: keep the first event and the latest, drop the oldest between."""
        if self.max_bytes is None or self.retained_bytes <= self.max_bytes or len(self._texts) < 3:
            return
        target = self.max_bytes * 3 // 4
        excess, end = self.retained_bytes - target, 1
        while excess > 0 and end < len(self._texts) - 1:
            excess -= len(self._texts[end])
            end += 1
        freed = sum(len(text) for text in self._texts[1:end])
        del self._seqs[1:end]
        del self._texts[1:end]
        self.retained_bytes -= freed
        self.evicted += end - 1

    def _index_after(self, seq: int) -> int:
        return bisect.bisect_right(self._seqs, seq)

    # -- delivery -------------------------------------------------------------------------

    @property
    def _queue_start(self) -> int:
        """The seq after which events are still due (neither handed over nor dropped)."""
        return max(self.sent_seq, self._skip_to)

    @property
    def pending_count(self) -> int:
        """Events due to Backend 2 and not yet handed to the connection."""
        return len(self._seqs) - self._index_after(self._queue_start)

    @property
    def unconfirmed_count(self) -> int:
        """Events handed to the connection and not yet confirmed."""
        return self._index_after(self._queue_start) - self._index_after(max(self.delivered_seq, self._skip_to))

    @property
    def all_delivered(self) -> bool:
        return self.pending_count == 0 and self.unconfirmed_count == 0

    def ready(self, limit: int = 500) -> list[Message]:
        """The events `due` (decoded)."""
        return [decode(text) for text in self.due(limit)[0]]

    def due(self, limit: int = 500) -> tuple[list[bytes], int]:
        """`(encoded events, seq of the last)` of at most `limit` events due to Backend 2, oldest
        first; `([], 0)` when none is."""
        start = self._index_after(self._queue_start)
        end = min(len(self._seqs), start + max(limit, 0))
        if end <= start:
            return [], 0
        return self._texts[start:end], self._seqs[end - 1]

    def mark_sent(self, seq: int) -> None:
        self.sent_seq = max(self.sent_seq, seq)

    def mark_delivered(self, seq: int, now: float = 0.0) -> int:
        """Record a confirmation; returns how many events it newly confirmed."""
        if seq <= self.delivered_seq:
            return 0
        newly = self._index_after(seq) - self._index_after(self.delivered_seq)
        self.delivered_seq = seq
        self._confirmations.append((now, seq))
        self._forget_old_confirmations(now)
        return newly

    def _forget_old_confirmations(self, now: float) -> None:
        while self._confirmations and self._confirmations[0][0] <= now - self.resend_grace:
            self._confirmed_before = self._confirmations.popleft()[1]

    def rewind(self, now: float = 0.0) -> None:
        """After a lost connection: due again is everything not confirmed `resend_grace` ago."""
        self._forget_old_confirmations(now)
        self.sent_seq = self._confirmed_before

    def _bound_queue(self) -> None:
        start = self._index_after(max(self.delivered_seq, self._skip_to))
        excess = len(self._seqs) - start - self.buffer_limit
        if excess > 0:
            self._skip_to = self._seqs[start + excess - 1]
            self.dropped += excess

    # -- lifetime -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def finish(self, now: float) -> None:
        if self.finished_at is None:
            self.finished_at = now

    def skip(self, seq: int, now: float = 0.0) -> None:
        """Count everything up to `seq` as delivered for good: a reconnection never resends it."""
        self.mark_delivered(seq, now)
        self._confirmed_before = max(self._confirmed_before, seq)

    def start_after(self, seq: int) -> None:
        """An empty log that resumes a delivery: events up to `seq` count as delivered."""
        self.next_seq = seq + 1
        self.sent_seq = self.delivered_seq = self._confirmed_before = self._skip_to = seq

    def end_delivery(self, now: float) -> None:
        self.delivery_ended_at = now

    def release(self) -> int:
        """Drop the events of a log whose every event Backend 2 confirmed (the run store keeps
        them); the counters stay for `state()`. Returns the bytes freed."""
        freed = self.retained_bytes
        self._seqs.clear()
        self._texts.clear()
        self.retained_bytes = 0
        self.released = True
        return freed

    def expired(self, now: float, retention: float) -> bool:
        """`retention` seconds after the flow ended, whatever the delivery state."""
        return self.finished_at is not None and now - self.finished_at >= retention

    def state(self) -> dict[str, Any]:
        return {
            "last_seq": self.last_seq,
            "sent_seq": self.sent_seq,
            "delivered_seq": self.delivered_seq,
            "pending": self.pending_count,
            "unconfirmed": self.unconfirmed_count,
            "dropped": self.dropped,
            "skipped": self.skipped,
            "waiting_out_of_order": len(self._early),
            "finished": self.finished,
            "retained_bytes": self.retained_bytes,
            "evicted": self.evicted,
            "truncated": self.truncated,
            "released": self.released,
        }


@dataclass
class EventLogStore:
    """Every flow's log, by flow id, with retention after the flow's end and a total size cap."""

    retention: float
    buffer_limit: int = 10_000
    max_event_bytes: int | None = None
    value_max_bytes: int = 64 * 1024
    max_flow_bytes: int | None = None
    max_total_bytes: int | None = None
    logs: dict[str, FlowEventLog] = field(default_factory=dict)
    total_bytes: int = 0

    def __len__(self) -> int:
        return len(self.logs)

    def __iter__(self) -> Iterator[FlowEventLog]:
        return iter(list(self.logs.values()))

    def get(self, flow_id: str) -> FlowEventLog | None:
        return self.logs.get(flow_id)

    def open(self, flow_id: str, url: str) -> FlowEventLog:
        """A fresh log for the flow (replacing the one of an earlier run of the same id)."""
        self.forget(flow_id)
        self.logs[flow_id] = FlowEventLog(
            flow_id,
            url,
            self.buffer_limit,
            max_event_bytes=self.max_event_bytes,
            value_max_bytes=self.value_max_bytes,
            max_bytes=self.max_flow_bytes,
        )
        return self.logs[flow_id]

    def add(self, event_log: FlowEventLog, messages: list[Message], now: float) -> None:
        before = event_log.retained_bytes
        event_log.add(messages, now)
        if self.logs.get(event_log.flow_id) is event_log:
            self.total_bytes += event_log.retained_bytes - before

    def forget(self, flow_id: str) -> None:
        event_log = self.logs.pop(flow_id, None)
        if event_log is not None:
            self.total_bytes -= event_log.retained_bytes

    def release(self, flow_id: str) -> None:
        """Drop the events of a flow delivered in full (see `FlowEventLog.release`)."""
        event_log = self.logs.get(flow_id)
        if event_log is not None:
            self.total_bytes -= event_log.release()

    def finish(self, flow_id: str, now: float) -> None:
        event_log = self.logs.get(flow_id)
        if event_log is not None:
            event_log.finish(now)

    def expire(self, now: float) -> list[str]:
        """Forget the logs past retention; returns their flow ids."""
        gone = [flow_id for flow_id, event_log in self.logs.items() if event_log.expired(now, self.retention)]
        for flow_id in gone:
            self.forget(flow_id)
        return gone

    def over_total(self) -> list[str]:
        """Forget finished logs, oldest first (delivered ones before), until under the total
        cap; returns their flow ids (running flows are bounded by the per-flow cap alone)."""
        if self.max_total_bytes is None or self.total_bytes <= self.max_total_bytes:
            return []
        finished = sorted(
            (log for log in self.logs.values() if log.finished_at is not None),
            key=lambda log: (log.delivery_ended_at is None, log.finished_at),
        )
        gone = []
        for event_log in finished:
            if self.total_bytes <= self.max_total_bytes:
                break
            self.forget(event_log.flow_id)
            gone.append(event_log.flow_id)
        return gone
