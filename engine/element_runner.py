"""Running one element of a flow run: its checks, timeout and retries, reported as it goes.

Contract:
- Inputs are checked against `input_schema` before the element runs, outputs against
  `output_schema` after; a mismatch is an `element_error` naming the field.
- Per-element `timeout` cancels the running coroutine (preemptive); `retry` re-runs an
  element after errors marked transient, with exponential backoff and full jitter. Attempts
  are counted on from the record's `attempts` (more than 0 when a resumed run starts an element
  again), and the retry policy allows its `max_attempts` to every (re)start.
- Every change of the element's state goes first to the checkpoint callback, then to the
  events: a `running` checkpoint at each attempt (the first one before `element_started`), then
  `completed` (outputs, ports taken) before `element_completed`, or `failed` / `cancelled`
  before `element_error`.
- A waiting element (`begin_wait`) is checkpointed `waiting` — its outputs hold the wait's
  `prompt` and `wake_at` — before its `element_started`; `complete` settles an element with a
  result it did not compute (a resume's answer, a re-run's cached result).
- Elements are called through an `ElementInvoker`, so the runtime decides where each kind of
  element runs (inline, a Ray task, the sandbox actor) without touching the scheduler.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from engine.contracts import ElementCompletedData, ElementErrorData, ElementStartedData, WaitingInfo
from engine.element import AnyElement, ElementContext, ElementResult, SubFlowRunner, Wait
from engine.errors import ElementTimeout, InputValidationError, OutputValidationError, describe, is_transient
from engine.events import EventEmitter, Redactor
from engine.models import utc_timestamp
from engine.port_check import check_ports
from engine.ports import Services
from engine.run_state import ElementRecord, ElementState
from engine.run_store import ElementCheckpoint
from engine.settings import Settings

CheckpointSink = Callable[[ElementCheckpoint], None]


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
class ElementRunner:
    """Runs the elements of one flow run, recording each in its `ElementRecord`."""

    flow_id: str
    settings: Settings
    services: Services
    invoker: ElementInvoker
    emitter: EventEmitter
    redactor: Redactor
    on_checkpoint: CheckpointSink
    cancel_reason: tuple[str, str] = ("cancelled", "cancelled")  # error type, message of a cancelled element
    sub_flows: Callable[[str], SubFlowRunner | None] = field(default=lambda element_id: None)  # `ctx.sub_flow`

    async def run(
        self, element: AnyElement, record: ElementRecord, inputs: dict[str, Any], *, resumed: bool = False
    ) -> ElementResult:
        definition = element.definition
        element_id = record.element_id
        record.started_at = utc_timestamp()
        t0 = time.monotonic()
        self.on_checkpoint(record.checkpoint(attempts=record.attempts + 1))
        self._started(element, inputs, resumed)
        ctx = ElementContext(
            flow_id=self.flow_id,
            element_id=element_id,
            settings=self.settings,
            services=self.services,
            emit_chunk_event=lambda chunk, index: self.emitter.emit(
                "llm_chunk", {"chunk": chunk, "index": index}, element_id
            ),
            sub_flow=self.sub_flows(element_id),
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
            self.report_error(record, ElementState.CANCELLED, *self.cancel_reason, t0)
            raise
        except Exception as exc:  # an element failure is data, reported as element_error
            error_type, message = describe(exc)
            self.report_error(record, ElementState.FAILED, error_type, message, t0)
            raise
        self.complete(record, result, ms_since(t0))
        return result

    def _started(self, element: AnyElement, inputs: dict[str, Any], resumed: bool) -> None:
        started: ElementStartedData = {
            "type": element.type_name,
            "name": element.definition.display_name,
            "inputs": inputs,
        }
        if resumed:
            started["resumed"] = True
        self.emitter.emit("element_started", started, element.element_id)

    def complete(
        self, record: ElementRecord, result: ElementResult, duration_ms: float | None, *, cached: bool = False
    ) -> None:
        """Record the element as completed with `result` and report it (`cached`: taken from
        another run, no work done)."""
        record.state = ElementState.COMPLETED
        record.duration_ms = duration_ms
        self.on_checkpoint(record.checkpoint(result))
        data: ElementCompletedData = {"outputs": result.outputs, "duration_ms": duration_ms}
        if cached:
            data["cached"] = True
        self.emitter.emit("element_completed", data, record.element_id)

    def begin_wait(self, element: AnyElement, record: ElementRecord, inputs: dict[str, Any], wait: Wait) -> WaitingInfo:
        """Record the element as waiting (its checkpoint keeps the prompt and when it times out)
        and report it started; returns what the run's `flow_paused` will say about it."""
        record.started_at = utc_timestamp()
        record.attempts += 1
        record.state = ElementState.WAITING
        wake_at = None if wait.timeout is None else time.time() + wait.timeout
        self.on_checkpoint(record.checkpoint(ElementResult({"prompt": wait.prompt, "wake_at": wake_at})))
        self._started(element, inputs, False)
        return self.waiting_info(element, wait.prompt, wake_at)

    def waiting_info(self, element: AnyElement, prompt: str, wake_at: float | None) -> WaitingInfo:
        schema = {name: spec.model_dump(exclude_none=True) for name, spec in element.definition.input_schema.items()}
        return {
            "element_id": element.element_id,
            "prompt": prompt,
            "input_schema": schema,
            "resume_path": f"/flows/{self.flow_id}/resume",
            "wake_at": wake_at,
        }

    async def _attempts(
        self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext, record: ElementRecord
    ) -> ElementResult:
        before = record.attempts
        policy = element.definition.retry
        if policy is None:
            record.attempts = before + 1
            return await self._attempt(element, inputs, ctx)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                record.attempts = before + attempt.retry_state.attempt_number
                if attempt.retry_state.attempt_number > 1:
                    self.on_checkpoint(record.checkpoint())
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

    def report_error(
        self, record: ElementRecord, state: ElementState, error_type: str, message: str, t0: float | None
    ) -> None:
        """Record the element as failed or cancelled (`t0`: when it started; None: not known)."""
        record.state = state
        record.duration_ms = None if t0 is None else ms_since(t0)
        message = self.redactor.text(message)
        record.error = {"error_type": error_type, "message": message}
        self.on_checkpoint(record.checkpoint())
        data: ElementErrorData = {
            "error_type": error_type,
            "message": message,
            "attempts": record.attempts,
            "duration_ms": record.duration_ms,
        }
        self.emitter.emit("element_error", data, record.element_id)


def ms_since(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000, 3)
