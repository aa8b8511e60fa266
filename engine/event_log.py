"""Event logs of flows for Backend 2: ordering, replay, the bounded delivery queue, retention.

Pure: no I/O, no clock (callers pass `now`, a monotonic time), no Ray.

`FlowEventLog`, one flow:
- `add(messages, now)` accepts event messages (dicts with an int `seq`, as made by
  `Event.to_message()`) in any order. They join the log only in `seq` order 1, 2, 3…; later
  ones wait in a reorder buffer, duplicates are ignored. A gap that stays open `gap_timeout`
  seconds (a publish lost when the streamer restarted) is skipped by `skip_gap(now)` and
  counted in `skipped`; so is one whose waiting events exceed `buffer_limit`.
- `after(seq)` is the replay: every logged event with a higher seq, in order.
- Delivery: `ready(limit)` lists the events due to Backend 2, oldest first. `mark_sent(seq)`
  records a hand-over to the connection, `mark_delivered(seq, now)` a confirmed one (the
  highest is `delivered_seq`). `rewind(now)` after a lost connection makes due again every
  event after the last one confirmed at least `resend_grace` seconds ago — Backend 2 may have
  lost what it had received but not yet processed — so Backend 2 sees each event at least
  once and dedupes by `seq`.
- The delivery queue is bounded: when more than `buffer_limit` events are neither confirmed
  nor dropped, the oldest of them leave the queue (counted in `dropped`), never the log;
  adding never blocks.

`EventLogStore`, many flows: `open` (a new log; a reused flow id replaces the old one),
`finish(flow_id, now)` starts the retention clock, `expire(now)` forgets every finished log
whose delivery has ended (`end_delivery`) and whose flow ended `retention` seconds ago.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]


def _seq_of(message: Message) -> int:
    return message["seq"]


@dataclass
class FlowEventLog:
    flow_id: str
    url: str
    buffer_limit: int = 10_000
    gap_timeout: float = 2.0
    resend_grace: float = 1.0
    events: list[Message] = field(default_factory=list)
    next_seq: int = 1
    sent_seq: int = 0
    delivered_seq: int = 0
    dropped: int = 0
    skipped: int = 0
    finished_at: float | None = None
    delivery_ended_at: float | None = None
    _early: dict[int, Message] = field(default_factory=dict)
    _gap_since: float | None = None
    _skip_to: int = 0  # events up to this seq left the delivery queue (dropped)
    _confirmations: deque[tuple[float, int]] = field(default_factory=deque)
    _confirmed_before: int = 0  # delivered_seq as of `resend_grace` seconds ago

    # -- log and replay -------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return self.next_seq - 1

    def add(self, messages: list[Message], now: float = 0.0) -> None:
        for message in messages:
            seq = message["seq"]
            if seq >= self.next_seq:
                self._early.setdefault(seq, message)
        self._join_early()
        if self._early and self._gap_since is None:
            self._gap_since = now
        if len(self._early) > self.buffer_limit:
            self._skip_first_gap(now)
        self._bound_queue()

    def _join_early(self) -> None:
        while self.next_seq in self._early:
            self.events.append(self._early.pop(self.next_seq))
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

    def after(self, seq: int) -> list[Message]:
        return self.events[self._index_after(seq) :]

    def _index_after(self, seq: int) -> int:
        return bisect.bisect_right(self.events, seq, key=_seq_of)

    # -- delivery -------------------------------------------------------------------------

    @property
    def _queue_start(self) -> int:
        """The seq after which events are still due (neither handed over nor dropped)."""
        return max(self.sent_seq, self._skip_to)

    @property
    def pending_count(self) -> int:
        """Events due to Backend 2 and not yet handed to the connection."""
        return len(self.events) - self._index_after(self._queue_start)

    @property
    def unconfirmed_count(self) -> int:
        """Events handed to the connection and not yet confirmed."""
        return self._index_after(self._queue_start) - self._index_after(max(self.delivered_seq, self._skip_to))

    @property
    def all_delivered(self) -> bool:
        return self.pending_count == 0 and self.unconfirmed_count == 0

    def ready(self, limit: int = 500) -> list[Message]:
        start = self._index_after(self._queue_start)
        return self.events[start : start + max(limit, 0)]

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
        excess = len(self.events) - start - self.buffer_limit
        if excess > 0:
            self._skip_to = self.events[start + excess - 1]["seq"]
            self.dropped += excess

    # -- lifetime -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def finish(self, now: float) -> None:
        if self.finished_at is None:
            self.finished_at = now

    def end_delivery(self, now: float) -> None:
        self.delivery_ended_at = now

    def expired(self, now: float, retention: float) -> bool:
        return (
            self.finished_at is not None and self.delivery_ended_at is not None and now - self.finished_at >= retention
        )

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
        }


@dataclass
class EventLogStore:
    """Every flow's log, by flow id, with retention after the flow's end."""

    retention: float
    buffer_limit: int = 10_000
    logs: dict[str, FlowEventLog] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.logs)

    def __iter__(self) -> Iterator[FlowEventLog]:
        return iter(list(self.logs.values()))

    def get(self, flow_id: str) -> FlowEventLog | None:
        return self.logs.get(flow_id)

    def open(self, flow_id: str, url: str) -> FlowEventLog:
        """A fresh log for the flow (replacing the one of an earlier run of the same id)."""
        self.logs[flow_id] = FlowEventLog(flow_id, url, self.buffer_limit)
        return self.logs[flow_id]

    def finish(self, flow_id: str, now: float) -> None:
        event_log = self.logs.get(flow_id)
        if event_log is not None:
            event_log.finish(now)

    def expire(self, now: float) -> list[str]:
        """Forget the logs past retention; returns their flow ids."""
        gone = [flow_id for flow_id, event_log in self.logs.items() if event_log.expired(now, self.retention)]
        for flow_id in gone:
            del self.logs[flow_id]
        return gone
