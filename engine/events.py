"""Numbering and delivery of one flow's events to an injected sink.

Contract: `EventEmitter.emit` stamps the envelope (`seq` contiguous from 1, UTC timestamp),
scrubs secret values out of every string it carries, and hands the `Event` to the sink at once
and in `seq` order. The sink is a plain callable that must not block (the runtime batches and
forwards; tests collect into a list).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.models import Event, EventType, utc_timestamp

EventSink = Callable[[Event], None]


class Redactor:
    """Replaces known secret values with `***` anywhere in a JSON-like value."""

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = ()):
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, self.MASK)
        return value

    def scrub(self, value: Any) -> Any:
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v) for v in value]
        return value


class EventEmitter:
    def __init__(self, flow_id: str, sink: EventSink, redactor: Redactor | None = None):
        self.flow_id = flow_id
        self._sink = sink
        self._redactor = redactor or Redactor()
        self._seq = 0

    @property
    def last_seq(self) -> int:
        return self._seq

    def emit(self, type_: EventType, data: dict[str, Any], element_id: str | None = None) -> Event:
        self._seq += 1
        event = Event(
            type=type_,
            flow_id=self.flow_id,
            seq=self._seq,
            timestamp=utc_timestamp(),
            element_id=element_id,
            data=self._redactor.scrub(data),
        )
        self._sink(event)
        return event
