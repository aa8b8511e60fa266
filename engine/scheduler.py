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
- One element's run — input and output checks, `timeout`, `retry` — is `engine.element_runner`.
- An element error fails the flow and cancels the elements still running, unless the element
  says `on_error: "continue"` (then its outgoing connections are skipped and the flow goes on),
  `on_error: "default"` (its connections carry its `default_outputs` instead) or has a
  connection from its error port (`from_output: "error"`): connections from the error port are
  taken only when the element failed and carry `{error_type, message}`; its other connections
  are then skipped (or carry `default_outputs`). Once the flow is failing, no element starts.
- `max_execution_time` is a hard deadline (status `timed_out`); `cancel()` ends the run with
  status `cancelled`. Either way running elements are cancelled and report `element_error`.
- Events go to the injected sink with contiguous `seq`: `flow_started` first, `flow_completed`
  last (`status`, `outputs`, `error`, `duration_ms`).
- Checkpoints go to the injected `on_checkpoint` (default: none kept), synchronously and
  before the event they go with, so a store committing both together never holds an event
  without its checkpoint: `running` when an element starts (and at each retry), `completed`,
  `failed` or `cancelled` when it settles (`engine.element_runner`), `skipped` before
  `element_skipped`. Unreachable and not-run elements have none.
- Resuming (`resume=Resume(checkpoints, last_seq)`, `engine.run_state`): the run continues a
  stored one whose process stopped before `flow_completed`. No `flow_started` again (unless
  `last_seq` is 0); seqs go on from `last_seq + 1`. Elements with a `completed`, `skipped` or
  `failed` checkpoint are settled from it without running and without events — their
  connections carry the stored outputs, a routing element's untaken branches stay skipped, a
  `failed` one with `on_error: "continue"` skips its connections, and one without fails the
  flow (nothing more starts; elements that were running end `cancelled`). Elements whose last
  checkpoint is `running` or `cancelled` (stopped by the process's end, not by their own fault)
  run again, with attempts counted on from the stored ones and `"resumed": true` in their
  `element_started`; elements never started run as usual. Records and the snapshot show the
  stored state, attempts, timings and errors, and the flow's outputs are restored with its
  output element. `max_execution_time` and `duration_ms` count from the resume.
- Waiting (`engine.element.Wait`: `wait_for_input`): an element whose `wait(inputs)` asks for
  input is not executed; it is checkpointed `waiting` and reported started, and the run goes on
  with whatever else can run. When nothing runs any more and no element failed, the run pauses:
  status `paused`, one `flow_paused` event per waiting element (its prompt, `input_schema`,
  resume path and `wake_at`), no `flow_completed`, and `run()` returns (nothing is held). A
  resumed run (`Resume.answers`) emits `flow_resumed` and completes the element with the answer
  as its outputs; a wait in `Resume.expired` fails `timed_out` (its `on_error` applies); other
  waiting elements wait again without new events. A cancelled, failed or timed-out run reports
  its waiting elements `cancelled`.
- A re-run (`Resume.cached`) reports each element settled from a checkpoint: `element_completed`
  with `cached: true`, or `element_skipped`.
- Sub-flows (`engine.nesting`): an element with an inline sub-flow gets `ctx.sub_flow`; each
  run of it is a nested `FlowRun` (`nesting=Nesting(...)`) inside this one — the same seqs and
  sink (events carry `scope`), invoker, services and checkpoint callback (scoped keys), one
  `RunGuard` for the whole flow, no deadline, `flow_started` or `flow_completed` of its own. A
  resumed run hands each sub-flow run the checkpoints stored under its scope, so what completed
  there is restored, not run again. Cancelling the element cancels the nested run's elements
  with this run's reason when it is stopping. Past `MAX_ELEMENT_RUNS_PER_FLOW` element runs the
  guard trips: nothing more starts, the top-level run stops `failed` with its error.
- Elements are called through an `ElementInvoker`, so the runtime decides where each kind of
  element runs (inline, a Ray task, the sandbox actor) without touching this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.contracts import ErrorInfo, RunSnapshot, WaitingInfo
from engine.element import ERROR_PORT, AnyElement, ElementResult, SubFlowRunner
from engine.element_runner import CheckpointSink, ElementInvoker, ElementRunner, InlineInvoker, as_result, ms_since
from engine.errors import ElementError, RunStopped, SubFlowFailed
from engine.events import EventEmitter, EventSink, Redactor
from engine.models import utc_timestamp
from engine.nesting import RunGuard, scoped_key, split_checkpoints
from engine.plan import FlowPlan
from engine.ports import Services
from engine.run_state import ElementRecord, ElementState, FlowStatus, Resume
from engine.run_store import ElementCheckpoint
from engine.settings import Settings

__all__ = ["ElementInvoker", "ElementState", "FlowRun", "FlowStatus", "InlineInvoker", "Resume", "as_result"]


_SKIPPED = object()  # settled connection state: skipped (a dict payload means delivered)
_SETTLED = frozenset({"completed", "skipped", "failed"})  # checkpoints a resumed run settles from
_INTERRUPTED = frozenset({"running", "cancelled"})
_UNKNOWN_ERROR: ErrorInfo = {
    "error_type": "element_error",
    "message": "failed",
}  # an error that was not recorded  # checkpoints of elements a resumed run starts again


def _discard(checkpoint: ElementCheckpoint) -> None:
    """The default checkpoint callback: a run that is not durable keeps no checkpoints."""


@dataclass
class _Abort:
    status: FlowStatus
    error_type: str
    message: str


@dataclass(frozen=True)
class Nesting:
    """What a sub-flow's run takes from the run of the element that holds it (see `engine.nesting`)."""

    emitter: EventEmitter  # the flow's seqs and sink, with this run's scope
    guard: RunGuard
    depth: int  # 1: a sub-flow of a top-level element
    key_prefix: str  # of its elements' checkpoint keys (`engine.nesting.scoped_key`)
    cancel_reason: Callable[[], tuple[str, str]]  # why its elements are cancelled when it is


@dataclass
class _SubFlows:
    """`ctx.sub_flow` of one element: runs of its inline sub-flow inside `owner`'s run."""

    owner: FlowRun
    element_id: str

    async def run(self, inputs: dict[str, Any], index: int) -> dict[str, Any]:
        return await self.owner.run_sub_flow(self.element_id, inputs, index)


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
    on_checkpoint: CheckpointSink = _discard
    resume: Resume | None = None
    nesting: Nesting | None = None  # set for the run of a sub-flow (see `run_sub_flow`)

    def __post_init__(self) -> None:
        self.status = FlowStatus.PENDING
        last_seq = self.resume.last_seq if self.resume else 0
        if self.nesting is None:
            self.emitter = EventEmitter(self.plan.flow_id, self.sink, self.redactor, last_seq)
            self._guard = RunGuard(self.settings.max_element_runs_per_flow, self.settings.max_flow_depth, self._trip)
            self._depth, self._key_prefix = 0, ""
        else:
            self.emitter = self.nesting.emitter
            self._guard = self.nesting.guard
            self._depth, self._key_prefix = self.nesting.depth, self.nesting.key_prefix
        self.records = {
            eid: ElementRecord(eid, el.type_name, key=self._key_prefix + eid if self._key_prefix else "")
            for eid, el in self.plan.elements.items()
        }
        self.outputs: dict[str, Any] = {}
        self.error: ErrorInfo | None = None
        self.started_at: str | None = None
        self.finished_at: str | None = None
        self.duration_ms: float | None = None
        self._settled: list[Any] = [None] * len(self.plan.definition.connections)
        self._running: dict[asyncio.Task[ElementResult], str] = {}
        self._waiting: dict[str, WaitingInfo] = {}
        self._restorable, self._nested_checkpoints = split_checkpoints(self.resume.checkpoints if self.resume else ())
        unknown = sorted(self._restorable.keys() - self.records.keys())
        if unknown:
            raise ValueError(f"checkpoints of elements that are not in flow '{self.plan.flow_id}': {unknown}")
        self._failure: ErrorInfo | None = self._restored_failure()
        self._abort: _Abort | None = None
        self._stop = asyncio.Event()
        self._stop_abort = _Abort(FlowStatus.CANCELLED, "cancelled", "cancelled by request")
        self._runner = ElementRunner(
            self.plan.flow_id,
            self.settings,
            self.services,
            self.invoker,
            self.emitter,
            self.redactor,
            self.on_checkpoint,
            sub_flows=self._sub_flows_of,
        )

    # -- public -------------------------------------------------------------------------------

    def cancel(self, reason: str = "cancelled by request") -> bool:
        """Ask the run to stop; True if it was still running."""
        if self.status not in (FlowStatus.PENDING, FlowStatus.RUNNING) or self._stop.is_set():
            return False
        self._stop_abort = _Abort(FlowStatus.CANCELLED, "cancelled", reason)
        self._stop.set()
        return True

    def _trip(self) -> None:
        """The run guard tripped (a runaway loop or iteration): the flow fails with its error."""
        if self._stop.is_set() or self._guard.error is None:
            return
        if self._failure is None:
            self._failure = self._guard.error
        self._stop_abort = _Abort(FlowStatus.FAILED, "cancelled", f"cancelled: {self._guard.error['message']}")
        self._stop.set()

    async def run(self) -> RunSnapshot:
        """Execute the flow to its end (or, resuming, from its checkpoints); returns the final `snapshot()`."""
        t0 = time.monotonic()
        self.status = FlowStatus.RUNNING
        self.started_at = (self.resume and self.resume.started_at) or utc_timestamp()
        if self.emitter.last_seq == 0 and self.nesting is None:
            self.emitter.emit("flow_started", {"start_element_id": self.plan.start_id, "elements": len(self.records)})
        try:
            outcome = await self._drive(None if self.nesting else t0 + self.max_execution_time)
        except asyncio.CancelledError:
            reason = self.nesting.cancel_reason() if self.nesting else ("cancelled", "the flow's runtime was shut down")
            await self._abort_running(_Abort(FlowStatus.CANCELLED, *reason))
            self._finish(FlowStatus.CANCELLED, t0)
            raise
        await self._abort_running(outcome)
        if outcome is None and self._waiting and self._failure is None:
            self._pause(t0)
        else:
            self._finish(outcome.status if outcome else self._final_status(), t0)
        return self.snapshot()

    def snapshot(self) -> RunSnapshot:
        snapshot: RunSnapshot = {
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
        if self._waiting:
            snapshot["waiting"] = list(self._waiting.values())
        if self.resume is not None and self.resume.rerun_of is not None:
            snapshot["rerun_of"] = self.resume.rerun_of
        return snapshot

    # -- the loop -----------------------------------------------------------------------------

    async def _drive(self, deadline: float | None) -> _Abort | None:
        """Run elements until nothing runs; an `_Abort` when the run must stop early
        (`deadline`: monotonic seconds, None for a sub-flow: its flow's deadline holds)."""
        self._mark_unreachable()
        self._start(self.plan.start_id, dict(self.initial_inputs))
        # A sub-flow's run is stopped by cancelling the element that holds it, never by `cancel()`.
        stop_waiter = asyncio.ensure_future(self._stop.wait()) if self.nesting is None else None
        try:
            while self._running:
                remaining = None if deadline is None else deadline - time.monotonic()
                done: set[asyncio.Future[Any]] = set()
                if remaining is None or remaining > 0:
                    waiting: set[asyncio.Future[Any]] = {*self._running}
                    if stop_waiter is not None:
                        waiting.add(stop_waiter)
                    done, _ = await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
                if self._stop.is_set():
                    return self._stop_abort
                if not done:
                    message = f"the flow exceeded its max_execution_time of {self.max_execution_time:g} s"
                    return _Abort(FlowStatus.TIMED_OUT, "timed_out", message)
                for task in self._running.keys() & done:
                    self._on_done(self._running.pop(task), task)
                if self._failure:
                    return _Abort(FlowStatus.FAILED, "cancelled", "cancelled because another element failed")
            if self._stop.is_set():  # cancelled while nothing ran (a paused run being cancelled)
                return self._stop_abort
            return None
        finally:
            if stop_waiter is not None:
                stop_waiter.cancel()

    def _final_status(self) -> FlowStatus:
        return FlowStatus.FAILED if self._failure else FlowStatus.COMPLETED

    def _mark_unreachable(self) -> None:
        for eid in self.records.keys() - self.plan.reachable:
            self.records[eid].state = ElementState.UNREACHABLE
            for index in self.plan.outgoing[eid]:
                self._settled[index] = _SKIPPED

    def _start(self, element_id: str, inputs: dict[str, Any] | None) -> None:
        """Run an element whose incoming connections all settled (`inputs` None: none delivered),
        or skip it; when the run resumes, settle it from its checkpoint instead if it has one."""
        checkpoint = self._restorable.pop(element_id, None)
        if checkpoint is not None and checkpoint.state in _SETTLED:
            self._restore(element_id, checkpoint)
            return
        if checkpoint is not None and checkpoint.state == "waiting" and inputs is not None:
            self._continue_wait(element_id, checkpoint)
            return
        interrupted = checkpoint if checkpoint is not None and checkpoint.state in _INTERRUPTED else None
        if inputs is None:
            record = self.records[element_id]
            record.state = ElementState.SKIPPED
            self.on_checkpoint(record.checkpoint())
            self.emitter.emit("element_skipped", {"reason": "no incoming branch was taken"}, element_id)
            self._settle(element_id, None)
        elif self._failure is not None:  # the flow is failing: nothing starts any more
            if interrupted is not None:
                self._restore_interrupted(element_id, interrupted)
        else:
            self._launch(element_id, inputs, interrupted)

    def _launch(self, element_id: str, inputs: dict[str, Any], interrupted: ElementCheckpoint | None) -> None:
        record = self.records[element_id]
        element = self.plan.elements[element_id]
        try:
            wait = element.wait(inputs)
        except ElementError as exc:
            record.attempts = 1
            self._runner.report_error(record, ElementState.FAILED, exc.error_type, str(exc), None)
            self._on_failed(element_id)
            return
        if wait is not None:
            self._waiting[element_id] = self._runner.begin_wait(element, record, inputs, wait)
            return
        if not self._guard.admit():  # a runaway flow: it is being stopped, nothing more starts
            return
        record.state = ElementState.RUNNING
        record.attempts = interrupted.attempts if interrupted else 0
        run = self._runner.run(element, record, inputs, resumed=interrupted is not None)
        task = asyncio.create_task(run, name=f"{self.plan.flow_id}/{element_id}")
        self._running[task] = element_id

    def _on_done(self, element_id: str, task: asyncio.Task[ElementResult]) -> None:
        error = task.exception()
        if error is None:
            self._settle(element_id, task.result())
        else:
            self._on_failed(element_id)

    def _on_failed(self, element_id: str) -> None:
        """An element failed (its `element_error` is out): the flow goes on by its error route,
        or fails."""
        if self.plan.failure_fails_flow(element_id):
            if self._failure is None:
                self._failure = {**self._error_of(element_id), "element_id": element_id}
        else:
            self._settle_failed(element_id)

    def _error_of(self, element_id: str) -> ErrorInfo:
        error = self.records[element_id].error or _UNKNOWN_ERROR
        return {"error_type": error["error_type"], "message": error["message"]}

    def _settle_failed(self, element_id: str) -> None:
        """A failed element that does not fail the flow: its error port carries the error; its
        other connections carry `default_outputs` (`on_error: "default"`) or are skipped."""
        definition = self.plan.elements[element_id].definition
        defaults = definition.default_outputs if definition.on_error == "default" else None
        result = None if defaults is None else ElementResult(dict(defaults))
        self._settle(element_id, result, self._error_of(element_id))

    # -- sub-flows ----------------------------------------------------------------------------

    def _sub_flows_of(self, element_id: str) -> SubFlowRunner | None:
        return _SubFlows(self, element_id) if element_id in self.plan.sub_plans else None

    async def run_sub_flow(self, element_id: str, inputs: dict[str, Any], index: int) -> dict[str, Any]:
        """Run `element_id`'s sub-flow once (its run `index`) inside this run; its end element's
        outputs, or `SubFlowFailed` naming the inner element that failed it. A run the store
        holds checkpoints of (the flow is resuming) goes on from them: what completed is not
        run again."""
        depth = self._depth + 1
        if not self._guard.depth_allowed(depth):
            raise SubFlowFailed(f"sub-flows nest more than {self._guard.max_depth} levels deep (MAX_FLOW_DEPTH)")
        checkpoints = self._nested_checkpoints.pop((element_id, index), None)
        child = FlowRun(
            plan=self.plan.sub_plans[element_id],
            initial_inputs=inputs,
            sink=self.sink,
            settings=self.settings,
            services=self.services,
            invoker=self.invoker,
            redactor=self.redactor,
            on_checkpoint=self.on_checkpoint,
            resume=Resume(checkpoints) if checkpoints else None,
            nesting=Nesting(
                self.emitter.nested(element_id, index),
                self._guard,
                depth,
                self._key_prefix + scoped_key(element_id, index, ""),
                self._cancel_reason_inside,
            ),
        )
        await child.run()
        if self._guard.error is not None or self._stop.is_set():
            raise RunStopped("the flow is stopping")
        if child.status is FlowStatus.COMPLETED:
            return child.outputs
        error = child.error or _UNKNOWN_ERROR
        where = f"'{error['element_id']}'" if "element_id" in error else "an element"
        raise SubFlowFailed(f"{where} failed: {error['message']}", error_type=error["error_type"])

    def _cancel_reason_inside(self) -> tuple[str, str]:
        """Why the elements of a sub-flow this run holds are cancelled."""
        if self._abort is not None:  # this run is stopping: its reason reaches every level
            return self._runner.cancel_reason
        return "cancelled", "cancelled because the element running this sub-flow stopped it"

    # -- resuming -----------------------------------------------------------------------------

    def _restored_failure(self) -> ErrorInfo | None:
        """The failure that was failing the flow when its process stopped, if any."""
        for checkpoint in self._restorable.values():
            if checkpoint.state == "failed" and self.plan.failure_fails_flow(checkpoint.element_id):
                return {**(checkpoint.error or _UNKNOWN_ERROR), "element_id": checkpoint.element_id}
        return None

    def _restore(self, element_id: str, checkpoint: ElementCheckpoint) -> None:
        """Settle an element from its checkpoint as if it had just settled: silently, or for a
        re-run reported as cached."""
        record = self.records[element_id]
        record.restore(checkpoint)
        cached = self.resume is not None and self.resume.cached
        if checkpoint.state == "completed":
            ports = None if checkpoint.ports is None else frozenset(checkpoint.ports)
            result = ElementResult(checkpoint.outputs or {}, ports)
            if cached:
                self._runner.complete(record, result, None, cached=True)
            self._settle(element_id, result)
            return
        if checkpoint.state == "skipped" and cached:
            self.on_checkpoint(record.checkpoint())
            self.emitter.emit("element_skipped", {"reason": "skipped in the original run"}, element_id)
        if checkpoint.state == "skipped":
            self._settle(element_id, None)
        elif not self.plan.failure_fails_flow(element_id):
            self._settle_failed(element_id)

    def _continue_wait(self, element_id: str, checkpoint: ElementCheckpoint) -> None:
        """A resumed run reaches an element that was waiting: answered, expired, or waiting on."""
        record = self.records[element_id]
        record.restore(checkpoint)
        assert self.resume is not None  # a waiting checkpoint only comes with a resume
        answer = self.resume.answers.get(element_id)
        if answer is not None:
            self.emitter.emit("flow_resumed", {"element_id": element_id, "inputs": answer}, element_id)
            result = ElementResult(dict(answer))
            self._runner.complete(record, result, None)
            self._settle(element_id, result)
        elif element_id in self.resume.expired:
            timeout = self.plan.elements[element_id].definition.timeout
            message = f"no input arrived within its timeout of {timeout:g} s"
            self._runner.report_error(record, ElementState.FAILED, "timed_out", message, None)
            self._on_failed(element_id)
        else:
            stored = checkpoint.outputs or {}
            element = self.plan.elements[element_id]
            self._waiting[element_id] = self._runner.waiting_info(
                element, stored.get("prompt", ""), stored.get("wake_at")
            )

    def _restore_interrupted(self, element_id: str, checkpoint: ElementCheckpoint) -> None:
        """An element that was running or cancelled while the flow was failing ends cancelled."""
        record = self.records[element_id]
        record.restore(checkpoint)
        if checkpoint.state == "running":
            message = "cancelled because another element failed"
            self._runner.report_error(record, ElementState.CANCELLED, "cancelled", message, None)

    # -- data movement ------------------------------------------------------------------------

    def _settle(self, element_id: str, result: ElementResult | None, error: ErrorInfo | None = None) -> None:
        """Settle the element's connections: each carries data from `result` (None: skipped), and
        those from its error port carry `error` when it failed (else they are skipped)."""
        element = self.plan.elements[element_id]
        if result is not None and element.is_output and not self.outputs:
            self.outputs = result.outputs
        for index in self.plan.outgoing[element_id]:
            conn = self.plan.connection(index)
            if conn.from_output == ERROR_PORT:
                self._settled[index] = (
                    _SKIPPED if error is None else self._payload(element, None, conn.to_input, dict(error))
                )
            elif result is None or not self._is_taken(element, conn.from_output, result):
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
        if self.records[element_id].state is not ElementState.PENDING:
            return
        settled = [self._settled[i] for i in self.plan.incoming[element_id]]
        if any(state is None for state in settled):
            return
        delivered = [state for state in settled if state is not _SKIPPED]
        if not delivered:
            self._start(element_id, None)
            return
        inputs: dict[str, Any] = {}
        for payload in delivered:
            inputs.update(payload)
        self._start(element_id, inputs)

    # -- ending -------------------------------------------------------------------------------

    async def _abort_running(self, abort: _Abort | None) -> None:
        self._abort = abort
        if abort is not None:
            self._runner.cancel_reason = (abort.error_type, abort.message)
        if abort is not None or self._failure is not None:
            error_type, message = self._runner.cancel_reason
            if self._failure is not None and abort is None:
                error_type, message = "cancelled", "cancelled because another element failed"
            for element_id in list(self._waiting):
                record = self.records[element_id]
                self._runner.report_error(record, ElementState.CANCELLED, error_type, message, None)
            self._waiting.clear()
        if not self._running:
            return
        for task in self._running:
            task.cancel()
        await asyncio.wait(self._running.keys(), timeout=5)
        self._running.clear()

    def _pause(self, t0: float) -> None:
        self.status = FlowStatus.PAUSED
        self.duration_ms = ms_since(t0)
        for element_id, info in self._waiting.items():
            self.emitter.emit("flow_paused", info, element_id)

    def _finish(self, status: FlowStatus, t0: float) -> None:
        """End the run with `status`; a top-level run reports it (`flow_completed`)."""
        for record in self.records.values():
            if record.state is ElementState.PENDING:
                record.state = ElementState.NOT_RUN
        self.status = status
        self.finished_at = utc_timestamp()
        self.duration_ms = ms_since(t0)
        if status is FlowStatus.FAILED:
            self.error = self._failure
        elif status is not FlowStatus.COMPLETED:
            abort = self._abort or _Abort(status, status.value, status.value)
            self.error = {"error_type": abort.error_type, "message": abort.message}
        if self.nesting is not None:
            return
        self.emitter.emit(
            "flow_completed",
            {"status": status.value, "outputs": self.outputs, "error": self.error, "duration_ms": self.duration_ms},
        )
