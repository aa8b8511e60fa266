"""Dataflow scheduling of one flow run — decides what runs next; never does I/O itself.

Contract:
- The start element receives `initial_inputs` as its inputs. An element runs as soon as every
  incoming connection is settled and at least one delivered data (no layer barriers;
  independent branches run concurrently). If all incoming connections were skipped, the
  element is skipped (`element_skipped`) and so are its outgoing connections.
- A connection with `from_output` carries that one output (to `to_input`, or to the same
  name); without it, all outputs go to same-named inputs (or, with `to_input`, as one object).
  A connection from a routing element names a branch in `from_output`, carries all of its
  outputs, and is skipped when the branch was not taken. Elements unreachable from the start
  never run and their connections count as skipped.
- Inputs are checked against `input_schema` before a run, outputs against `output_schema`
  after; a mismatch is an `element_error` naming the field.
- Per-element `timeout` cancels the running coroutine (preemptive); `retry` re-runs an
  element after errors marked transient, with exponential backoff and full jitter.
- An element error fails the flow and cancels the elements still running, unless the element
  says `on_error: "continue"` (then its outgoing connections are skipped and the flow goes on).
- `max_execution_time` is a hard deadline (status `timed_out`); `cancel()` ends the run with
  status `cancelled`. Either way running elements are cancelled and report `element_error`.
- Events go to the injected sink with contiguous `seq`: `flow_started` first, `flow_completed`
  last (`status`, `outputs`, `error`, `duration_ms`).
- Elements are called through an `ElementInvoker`, so the runtime decides where each kind of
  element runs (inline, a Ray task, the sandbox actor) without touching this module.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from engine.contracts import ElementErrorData, ElementSnapshot, ErrorInfo, RunSnapshot
from engine.element import AnyElement, ElementContext, ElementResult
from engine.errors import ElementTimeout, InputValidationError, OutputValidationError, describe, is_transient
from engine.events import EventEmitter, EventSink, Redactor
from engine.models import utc_timestamp
from engine.plan import FlowPlan
from engine.port_check import check_ports
from engine.ports import Services
from engine.settings import Settings


class FlowStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class ElementState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    UNREACHABLE = "unreachable"
    NOT_RUN = "not_run"


class ElementInvoker(Protocol):
    async def invoke(self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        """Run one attempt of an element wherever the runtime places it."""
        ...


def as_result(value: dict[str, Any] | ElementResult) -> ElementResult:
    if isinstance(value, ElementResult):
        return value
    if not isinstance(value, dict):
        raise OutputValidationError(f"execute() must return a dict of outputs, got {type(value).__name__}")
    return ElementResult(outputs=value)


class InlineInvoker:
    """Runs every element in the caller's event loop — the engine without a runtime."""

    async def invoke(self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        return as_result(await element.execute(inputs, ctx))


@dataclass
class ElementRecord:
    type: str
    state: ElementState = ElementState.PENDING
    started_at: str | None = None
    duration_ms: float | None = None
    attempts: int = 0
    error: ErrorInfo | None = None

    def as_dict(self) -> ElementSnapshot:
        return {
            "type": self.type,
            "state": self.state.value,
            "started_at": self.started_at,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
            "error": self.error,
        }


_SKIPPED = object()  # settled connection state: skipped (a dict payload means delivered)


@dataclass
class _Abort:
    status: FlowStatus
    error_type: str
    message: str


@dataclass
class FlowRun:
    plan: FlowPlan
    initial_inputs: dict[str, Any]
    sink: EventSink
    settings: Settings
    services: Services
    invoker: ElementInvoker = field(default_factory=InlineInvoker)
    max_execution_time: float = 300.0
    redactor: Redactor = field(default_factory=Redactor)

    def __post_init__(self) -> None:
        self.status = FlowStatus.PENDING
        self.emitter = EventEmitter(self.plan.flow_id, self.sink, self.redactor)
        self.records = {eid: ElementRecord(el.type_name) for eid, el in self.plan.elements.items()}
        self.outputs: dict[str, Any] = {}
        self.error: ErrorInfo | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.duration_ms: float | None = None
        self._settled: list[Any] = [None] * len(self.plan.definition.connections)
        self._running: dict[asyncio.Task[ElementResult], str] = {}
        self._failure: ErrorInfo | None = None
        self._abort: _Abort | None = None
        self._stop = asyncio.Event()
        self._stop_reason = "cancelled by request"

    # -- public -------------------------------------------------------------------------------

    def cancel(self, reason: str = "cancelled by request") -> bool:
        """Ask the run to stop; True if it was still running."""
        if self.status not in (FlowStatus.PENDING, FlowStatus.RUNNING) or self._stop.is_set():
            return False
        self._stop_reason = reason
        self._stop.set()
        return True

    async def run(self) -> RunSnapshot:
        """Execute the flow to its end; returns the final `snapshot()`."""
        t0 = time.monotonic()
        self.status = FlowStatus.RUNNING
        self.started_at = utc_timestamp()
        self.emitter.emit("flow_started", {"start_element_id": self.plan.start_id, "elements": len(self.records)})
        try:
            outcome = await self._drive(t0 + self.max_execution_time)
        except asyncio.CancelledError:
            await self._abort_running(_Abort(FlowStatus.CANCELLED, "cancelled", "the flow's runtime was shut down"))
            self._finish(FlowStatus.CANCELLED, t0)
            raise
        await self._abort_running(outcome)
        self._finish(outcome.status if outcome else self._final_status(), t0)
        return self.snapshot()

    def snapshot(self) -> RunSnapshot:
        return {
            "flow_id": self.plan.flow_id,
            "status": self.status.value,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "duration_ms": self.duration_ms,
            "elements": {eid: rec.as_dict() for eid, rec in self.records.items()},
            "outputs": self.outputs,
            "error": self.error,
            "last_seq": self.emitter.last_seq,
        }

    # -- the loop -----------------------------------------------------------------------------

    async def _drive(self, deadline: float) -> _Abort | None:
        self._mark_unreachable()
        self._launch(self.plan.start_id, dict(self.initial_inputs))
        stop_waiter = asyncio.ensure_future(self._stop.wait())
        try:
            while self._running:
                remaining = deadline - time.monotonic()
                done: set[asyncio.Future[Any]] = set()
                if remaining > 0:
                    done, _ = await asyncio.wait(
                        {*self._running, stop_waiter}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
                    )
                if self._stop.is_set():
                    return _Abort(FlowStatus.CANCELLED, "cancelled", self._stop_reason)
                if not done:
                    message = f"the flow exceeded its max_execution_time of {self.max_execution_time:g} s"
                    return _Abort(FlowStatus.TIMED_OUT, "timed_out", message)
                for task in self._running.keys() & done:
                    self._on_done(self._running.pop(task), task)
                if self._failure:
                    return _Abort(FlowStatus.FAILED, "cancelled", "cancelled because another element failed")
            return None
        finally:
            stop_waiter.cancel()

    def _final_status(self) -> FlowStatus:
        return FlowStatus.FAILED if self._failure else FlowStatus.COMPLETED

    def _mark_unreachable(self) -> None:
        for eid in self.records.keys() - self.plan.reachable:
            self.records[eid].state = ElementState.UNREACHABLE
            for index in self.plan.outgoing[eid]:
                self._settled[index] = _SKIPPED

    def _launch(self, element_id: str, inputs: dict[str, Any]) -> None:
        record = self.records[element_id]
        record.state = ElementState.RUNNING
        task = asyncio.create_task(self._run_element(element_id, inputs), name=f"{self.plan.flow_id}/{element_id}")
        self._running[task] = element_id

    def _on_done(self, element_id: str, task: asyncio.Task[ElementResult]) -> None:
        error = task.exception()
        if error is None:
            self._settle(element_id, task.result())
            return
        record = self.records[element_id]
        if self.plan.elements[element_id].definition.on_error == "continue":
            self._settle(element_id, None)
        elif self._failure is None:
            failure = record.error or {"error_type": "element_error", "message": "failed"}
            self._failure = {**failure, "element_id": element_id}

    # -- data movement ------------------------------------------------------------------------

    def _settle(self, element_id: str, result: ElementResult | None) -> None:
        element = self.plan.elements[element_id]
        if result is not None and element.is_output and not self.outputs:
            self.outputs = result.outputs
        for index in self.plan.outgoing[element_id]:
            conn = self.plan.connection(index)
            if result is None or not self._is_taken(element, conn.from_output, result):
                self._settled[index] = _SKIPPED
            else:
                self._settled[index] = self._payload(element, conn.from_output, conn.to_input, result.outputs)
            self._on_input_settled(conn.to_id)

    @staticmethod
    def _is_taken(element: AnyElement, port: str | None, result: ElementResult) -> bool:
        if result.ports is None or port is None or not element.routes:
            return True
        return port in result.ports

    @staticmethod
    def _payload(
        element: AnyElement, port: str | None, to_input: str | None, outputs: dict[str, Any]
    ) -> dict[str, Any]:
        if port is None or element.routes:
            return {to_input: dict(outputs)} if to_input else dict(outputs)
        if port not in outputs:
            return {}
        return {to_input or port: outputs[port]}

    def _on_input_settled(self, element_id: str) -> None:
        record = self.records[element_id]
        if record.state is not ElementState.PENDING:
            return
        settled = [self._settled[i] for i in self.plan.incoming[element_id]]
        if any(state is None for state in settled):
            return
        delivered = [state for state in settled if state is not _SKIPPED]
        if not delivered:
            record.state = ElementState.SKIPPED
            self.emitter.emit("element_skipped", {"reason": "no incoming branch was taken"}, element_id)
            self._settle(element_id, None)
            return
        inputs: dict[str, Any] = {}
        for payload in delivered:
            inputs.update(payload)
        self._launch(element_id, inputs)

    # -- one element --------------------------------------------------------------------------

    async def _run_element(self, element_id: str, inputs: dict[str, Any]) -> ElementResult:
        element = self.plan.elements[element_id]
        definition = element.definition
        record = self.records[element_id]
        record.started_at = utc_timestamp()
        t0 = time.monotonic()
        self.emitter.emit(
            "element_started",
            {"type": element.type_name, "name": definition.display_name, "inputs": inputs},
            element_id,
        )
        ctx = ElementContext(
            flow_id=self.plan.flow_id,
            element_id=element_id,
            settings=self.settings,
            services=self.services,
            emit_chunk_event=lambda chunk, index: self.emitter.emit(
                "llm_chunk", {"chunk": chunk, "index": index}, element_id
            ),
        )
        try:
            problems = check_ports(inputs, definition.input_schema)
            if problems:
                raise InputValidationError(f"invalid input of '{definition.display_name}': " + "; ".join(problems))
            result = await self._attempts(element, inputs, ctx, record)
            problems = check_ports(result.outputs, definition.output_schema)
            if problems:
                raise OutputValidationError(f"invalid output of '{definition.display_name}': " + "; ".join(problems))
        except asyncio.CancelledError:
            abort = self._abort or _Abort(FlowStatus.CANCELLED, "cancelled", "cancelled")
            self._record_error(element_id, ElementState.CANCELLED, abort.error_type, abort.message, t0)
            raise
        except Exception as exc:  # an element failure is data, reported as element_error
            error_type, message = describe(exc)
            self._record_error(element_id, ElementState.FAILED, error_type, message, t0)
            raise
        record.state = ElementState.COMPLETED
        record.duration_ms = _ms_since(t0)
        self.emitter.emit(
            "element_completed", {"outputs": result.outputs, "duration_ms": record.duration_ms}, element_id
        )
        return result

    async def _attempts(
        self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext, record: ElementRecord
    ) -> ElementResult:
        policy = element.definition.retry
        if policy is None:
            record.attempts = 1
            return await self._attempt(element, inputs, ctx)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                record.attempts = attempt.retry_state.attempt_number
                result = await self._attempt(element, inputs, ctx)
        return result

    async def _attempt(self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        limit = element.definition.timeout
        if limit is None:
            return await self.invoker.invoke(element, inputs, ctx)
        try:
            async with asyncio.timeout(limit) as scope:
                return await self.invoker.invoke(element, inputs, ctx)
        except TimeoutError:
            if not scope.expired():
                raise
            name = element.definition.display_name
            raise ElementTimeout(f"'{name}' did not finish within its timeout of {limit:g} s") from None

    def _record_error(self, element_id: str, state: ElementState, error_type: str, message: str, t0: float) -> None:
        record = self.records[element_id]
        record.state = state
        record.duration_ms = _ms_since(t0)
        message = self.redactor.text(message)
        record.error = {"error_type": error_type, "message": message}
        data: ElementErrorData = {
            "error_type": error_type,
            "message": message,
            "attempts": record.attempts,
            "duration_ms": record.duration_ms,
        }
        self.emitter.emit("element_error", data, element_id)

    # -- ending -------------------------------------------------------------------------------

    async def _abort_running(self, abort: _Abort | None) -> None:
        self._abort = abort
        if not self._running:
            return
        for task in self._running:
            task.cancel()
        await asyncio.wait(self._running.keys(), timeout=5)
        self._running.clear()

    def _finish(self, status: FlowStatus, t0: float) -> None:
        for record in self.records.values():
            if record.state is ElementState.PENDING:
                record.state = ElementState.NOT_RUN
        self.status = status
        self.finished_at = utc_timestamp()
        self.duration_ms = _ms_since(t0)
        if status is FlowStatus.FAILED:
            self.error = self._failure
        elif status is not FlowStatus.COMPLETED:
            abort = self._abort or _Abort(status, status.value, status.value)
            self.error = {"error_type": abort.error_type, "message": abort.message}
        self.emitter.emit(
            "flow_completed",
            {"status": status.value, "outputs": self.outputs, "error": self.error, "duration_ms": self.duration_ms},
        )


def _ms_since(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 3)
