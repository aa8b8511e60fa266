"""One flow's event log: replay, ordering, and the bounded delivery queue (pure, no I/O).

Contract:
- `add(messages)` accepts event messages (dicts with `seq`) in any order; they join the log
  only in `seq` order 1, 2, 3… (later ones wait in a reorder buffer; duplicates are ignored).
- `after(seq)` is the replay: every logged event with a higher seq. The log keeps everything
  until the whole log expires (`expired(now, retention)` after the flow finished).
- Delivery: `to_send()` lists the events not yet handed to Backend 2, oldest first.
  `mark_sent(seq)` records a hand-over and `mark_delivered(seq)` a confirmed one; `rewind()`
  (after a lost connection) makes everything after the last confirmed seq due again, so
  Backend 2 sees each event at least once and dedupes by `seq`.
- The delivery queue is bounded by `buffer_limit`: when more events wait than that, the oldest
  waiting ones are dropped from the queue (counted in `dropped`), never from the log, and the
  flow is never blocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FlowEventLog:
    flow_id: str
    url: str
    buffer_limit: int = 10_000
    events: list[dict[str, Any]] = field(default_factory=list)
    sent_seq: int = 0
    delivered_seq: int = 0
    dropped: int = 0
    finished_at: float | None = None
    _early: dict[int, dict[str, Any]] = field(default_factory=dict)
    _skip_to: int = 0  # events up to this seq were dropped from delivery

    @property
    def last_seq(self) -> int:
        return len(self.events)

    @property
    def pending_count(self) -> int:
        return self.last_seq - max(self.sent_seq, self._skip_to)

    def add(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            seq = message["seq"]
            if seq > self.last_seq:
                self._early[seq] = message
        while self.last_seq + 1 in self._early:
            self.events.append(self._early.pop(self.last_seq + 1))
        self._bound_queue()

    def _bound_queue(self) -> None:
        excess = self.last_seq - max(self.delivered_seq, self._skip_to) - self.buffer_limit
        if excess > 0:
            start = max(self.delivered_seq, self._skip_to)
            self._skip_to = start + excess
            self.dropped += max(0, self._skip_to - max(start, self.sent_seq))
            self.sent_seq = max(self.sent_seq, self._skip_to)

    def after(self, seq: int) -> list[dict[str, Any]]:
        return self.events[max(seq, 0) :]

    def to_send(self, limit: int = 500) -> list[dict[str, Any]]:
        start = max(self.sent_seq, self._skip_to)
        return self.events[start : start + limit]

    def mark_sent(self, seq: int) -> None:
        self.sent_seq = max(self.sent_seq, seq)

    def mark_delivered(self, seq: int) -> None:
        self.delivered_seq = max(self.delivered_seq, seq)

    def rewind(self) -> None:
        self.sent_seq = max(self.delivered_seq, self._skip_to)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def expired(self, now: float, retention: float) -> bool:
        return self.finished_at is not None and now - self.finished_at >= retention

    def state(self) -> dict[str, Any]:
        return {
            "last_seq": self.last_seq,
            "sent_seq": self.sent_seq,
            "delivered_seq": self.delivered_seq,
            "pending": self.pending_count,
            "dropped": self.dropped,
            "waiting_out_of_order": len(self._early),
            "finished": self.finished,
        }
