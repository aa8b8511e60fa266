"""Numbering and delivery of one flow's events to an injected sink.

Contract: `EventEmitter.emit` stamps the envelope (`seq` contiguous from 1, or from
`last_seq + 1` for a resumed run that continues the events already stored; UTC timestamp),
scrubs secret values out of every string it carries, and hands the `Event` to the sink at once
and in `seq` order. A sub-flow's emitter (`nested`) shares the flow's seqs and sink and adds a
`scope` to each event: where it runs, outermost first. The sink is a plain callable that must not block (the runtime batches and
forwards; tests collect into a list).

The scrub walks the data without recursion, so no value, however deep, makes `emit` fail: when
there are secrets to mask, parts of an event nested more than `engine.limits.MAX_EVENT_DEPTH`
containers deep are replaced by `"<nested too deeply>"` (elements that check their values keep
them within `MAX_VALUE_DEPTH`, half of that, so their data is never cut).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, overload

from engine.contracts import (
    ElementCompletedData,
    ElementErrorData,
    ElementSkippedData,
    ElementStartedData,
    EventData,
    FlowCompletedData,
    FlowPausedData,
    FlowResumedData,
    FlowStartedData,
    LlmChunkData,
    ScopeEntry,
)
from engine.limits import MAX_EVENT_DEPTH, TOO_DEEP
from engine.models import Event, EventType, utc_timestamp

EventSink = Callable[[Event], None]


class Redactor:
    """Replaces known secret values with `***` anywhere in a JSON-like value (iteratively)."""

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = (), max_depth: int = MAX_EVENT_DEPTH):
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self.max_depth = max_depth

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, self.MASK)
        return value

    def scrub(self, value: Any) -> Any:
        """A copy of `value` with every string (keys too) masked; tuples become lists, and a
        container nested deeper than `max_depth` becomes `TOO_DEEP`. No secrets: `value` itself."""
        if not self._secrets:
            return value
        pending: list[tuple[Any, Any, int]] = []  # (source container, its empty copy, its depth)
        root = self._copy(value, 1, pending)
        while pending:
            source, target, depth = pending.pop()
            if isinstance(target, dict):
                for key, item in source.items():
                    target[self.text(key) if isinstance(key, str) else key] = self._copy(item, depth + 1, pending)
            else:
                target.extend([self._copy(item, depth + 1, pending) for item in source])
        return root

    def _copy(self, value: Any, depth: int, pending: list[tuple[Any, Any, int]]) -> Any:
        """The masked scalar, or an empty container whose filling is added to `pending`."""
        if isinstance(value, str):
            return self.text(value)
        if not isinstance(value, dict | list | tuple):
            return value
        if depth > self.max_depth:
            return TOO_DEEP
        target: dict[Any, Any] | list[Any] = {} if isinstance(value, dict) else []
        pending.append((value, target, depth))
        return target


class _Counter:
    """The seq of a flow's last event, shared by the emitters of its sub-flows."""

    def __init__(self, value: int):
        self.value = value


class EventEmitter:
    def __init__(
        self,
        flow_id: str,
        sink: EventSink,
        redactor: Redactor | None = None,
        last_seq: int = 0,
        scope: Sequence[ScopeEntry] = (),
    ):
        self.flow_id = flow_id
        self._sink = sink
        self._redactor = redactor or Redactor()
        self._counter = _Counter(last_seq)
        self.scope: tuple[ScopeEntry, ...] = tuple(scope)

    @property
    def last_seq(self) -> int:
        return self._counter.value

    def nested(self, element_id: str, index: int) -> EventEmitter:
        """The emitter of a sub-flow run by `element_id` (its run `index`): the same seqs and
        sink, every event carrying the scope one level deeper."""
        child = EventEmitter(
            self.flow_id, self._sink, self._redactor, 0, (*self.scope, {"element_id": element_id, "index": index})
        )
        child._counter = self._counter
        return child

    # One signature per event type: the type checker holds each event's `data` to its definition.
    @overload
    def emit(self, type_: Literal["flow_started"], data: FlowStartedData) -> Event: ...
    @overload
    def emit(self, type_: Literal["element_started"], data: ElementStartedData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["llm_chunk"], data: LlmChunkData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["element_completed"], data: ElementCompletedData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["element_error"], data: ElementErrorData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["element_skipped"], data: ElementSkippedData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["flow_paused"], data: FlowPausedData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["flow_resumed"], data: FlowResumedData, element_id: str) -> Event: ...
    @overload
    def emit(self, type_: Literal["flow_completed"], data: FlowCompletedData) -> Event: ...

    def emit(self, type_: EventType, data: EventData, element_id: str | None = None) -> Event:
        self._counter.value += 1
        event = Event(
            type=type_,
            flow_id=self.flow_id,
            seq=self._counter.value,
            timestamp=utc_timestamp(),
            element_id=element_id,
            data=self._redactor.scrub(data),
            scope=[dict(entry) for entry in self.scope] if self.scope else None,
        )
        self._sink(event)
        return event
