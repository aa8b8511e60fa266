"""FlowCoordinator: the thin Ray shell around the scheduler — orchestration only.

Contract: one async actor runs many flows concurrently (the pool is sized by
`COORDINATOR_COUNT`; new flows are assigned by flow id, see `actors.names`). Each coordinator has a
streamer of its own (`backend2-streamer-<index>`, created on the coordinator's node) that
delivers its flows' events; `delivery_state` asks it, `stats` wakes it. Runs are durable: the
run store (`engine.run_store`) holds each run's request, status, element checkpoints and
events, written by the coordinator's `EventOutbox` in one group commit per flush.
- `submit(body, owner)` validates with the same function as the ingress, records the run in
  the store (`conflict` when the id is running, or held by another owner), starts it as an
  asyncio task and returns at once. `submit_many` does it for a batch (one actor call for the
  submissions an ingress replica received meanwhile), each entry failing alone.
- Resume: the first call after a (re)start — a crash of this actor, or the whole service
  started again on the same store — picks up every unfinished run of the store that this
  coordinator owns, rebuilds it from its checkpoints and resumes it (settled elements are not
  run again; those that were running run again with `resumed: true`). A run whose request no
  longer validates is closed as failed (`resume_failed`).
- `status`, `element`, `events`, `runs` read running runs from memory and everything else from
  the store, until `EVENT_RETENTION_SECONDS` after a run ended (then `prune` deletes it; the
  coordinator prunes every `PRUNE_INTERVAL` seconds). `cancel` checks and acts in one call
  (`unknown`, `not_running` with the snapshot, or `cancelled` once it has taken effect) and
  reaches running work through the scheduler. A commit the store refuses stops the runs it
  belonged to at once, loudly (`store_unavailable` in the log, the cancel reason names it).
- Pauses: a run that reaches `wait_for_input` ends its task paused (status `paused` in the
  store; nothing of it stays in memory but a timer when its wait has a `timeout`).
  `resume_paused(flow_id, element_id, inputs, owner)` checks the inputs against the element's
  `input_schema` (`invalid` with every problem), refuses a flow not paused at that element
  (`conflict`) and otherwise continues the run from its checkpoints with the inputs as the
  element's outputs (`resumed`). A timer firing continues it with the wait `timed_out`;
  `cancel` of a paused run continues it just to cancel it (its events say so). After a restart
  paused runs stay paused and their timers are set again.
- The pool (`peers`): a run belongs to the coordinator the store names. A call about one flow
  (`status`, `definition`, `element`, `events`, `wait_events`, `cancel`, `resume_paused`,
  `rerun_source`, `delivery_state`) made to another coordinator is forwarded to it; a run whose
  coordinator no longer exists is claimed (`RunStore.claim_run`) and taken up by the one asked.
  `set_pool_size(n)`: a coordinator of index ≥ n leaves the pool — it finishes its runs, waits
  for its streamer to deliver everything, hands its paused runs to the coordinators their ids
  fall to (`adopt`), forwards late calls and submissions for `RETIRE_LINGER` seconds and exits;
  the others take over runs of coordinators that no longer exist.
- Answers are the shapes of `engine.contracts`. It does no I/O of its own: the store, the
  elements and `services/` do.

Owners: `submit(body, owner)` records the caller that started the flow (see `web.guards`);
reads and `cancel` given another owner answer as for an unknown flow (None), so a caller
never reads, cancels or learns the state of another caller's flow. A flow id held by another
caller is refused as `conflict`: ids are global (Backend 2 and the store are keyed by them), so
callers should pick random ones. A finished run of the same owner is replaced by a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Concatenate

import ray

from actors import metrics
from actors.event_forwarder import EventForwarder, EventOutbox
from actors.names import coordinator_index, named_actor_options, on_node, streamer_name
from actors.peers import Peers, RayPeers
from actors.placement import RayInvoker
from actors.ray_types import remote_view
from actors.sandbox import SandboxActorClient
from actors.streamer import Backend2Streamer
from actors.usage import MemoryReclaimer, process_usage
from engine.contracts import CancelOutcome, ErrorInfo, ProblemInfo, ResumeOutcome, RunSnapshot, SubmitOutcome
from engine.events import EventEmitter, Redactor
from engine.logging_setup import configure_logging
from engine.models import ExecuteRequest
from engine.plan import FlowPlan
from engine.port_check import check_ports
from engine.registry import ElementRegistry
from engine.rerun import RerunRequest, RerunSource, rerun_body, reused_checkpoints
from engine.run_store import NewRun, RunRecord, RunStore, RunUpdate
from engine.scheduler import FlowRun, FlowStatus, Resume
from engine.settings import get_settings
from engine.validation import Problem, Validation
from engine.validation_offload import validate_off_loop
from runtime.catalog import builtin_registry
from services.hub import ServiceHub
from services.run_store import open_run_store
from services.sandbox.isolation import make_undumpable

log = logging.getLogger(__name__)

PRUNE_INTERVAL = 60.0
QUIET_BEFORE_RECLAIM = 0.5  # seconds without a running flow before freed memory goes back to the OS
EVENTS_PAGE_MAX = 5_000
RETIRE_POLL = 0.5  # seconds between two looks of a retiring coordinator at its runs and deliveries
# Seconds a coordinator that left the pool still forwards calls before it exits: ingress replicas
# learn the pool's new size at their next health check (every 10 s).
RETIRE_LINGER = 30.0


@dataclass
class _Readers:
    """The live readers of one flow waiting for its next commit (`wait_events`)."""

    committed: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0


@dataclass
class _Admission:
    """A submission on its way in: its body, validation, owner and what a re-run reuses."""

    body: bytes | dict[str, Any]
    validation: Validation
    owner: str
    reuse: Callable[[FlowPlan], tuple[Resume | None, list[Problem]]] | None = None

    def raw(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()


@dataclass
class _ActiveFlow:
    run: FlowRun
    task: asyncio.Task[None]
    url: str
    owner: str = ""


type _FlowCall[**P, R] = Callable[Concatenate["FlowCoordinatorCore", str, P], Awaitable[R]]


def _at_owner[**P, R](method: _FlowCall[P, R]) -> _FlowCall[P, R]:
    """A call about one flow (its id first) answered by the coordinator that owns the flow:
    here, or forwarded to it (`FlowCoordinatorCore._owner_elsewhere`)."""

    @functools.wraps(method)
    async def at_owner(self: FlowCoordinatorCore, flow_id: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        await self._ready_once()
        owner = await self._owner_elsewhere(flow_id)
        if owner is None or self.peers is None:
            return await method(self, flow_id, *args, **kwargs)
        answer: R = await self.peers.call(owner, method.__name__, flow_id, *args, **kwargs)
        return answer

    return at_owner


class FlowCoordinatorCore:
    def __init__(
        self,
        index: int,
        count: int,
        streamer: Any,
        services: ServiceHub,
        store: RunStore,
        registry: ElementRegistry | None = None,
        peers: Peers | None = None,
    ):
        self.index = index
        self.count = count  # the pool's size as this coordinator last heard it
        self.peers = peers  # the pool's other coordinators (None: this one alone)
        self.settings = services.settings
        self.registry = registry or builtin_registry()
        self.streamer = streamer
        self.store = store
        self.outbox = EventOutbox(
            streamer,
            store,
            max_event_bytes=self.settings.max_event_bytes,
            value_max_bytes=self.settings.event_value_max_bytes,
            on_store_failure=self._store_failed,
            on_committed=self._committed,
        )
        self.services = services
        self.invoker = RayInvoker()
        self.redactor = Redactor(self.settings.secret_values())
        self.active: dict[str, _ActiveFlow] = {}
        self.completed_count = 0
        self.memory = MemoryReclaimer()
        self._reclaim_timer: asyncio.TimerHandle | None = None
        self._wakes: dict[str, asyncio.TimerHandle] = {}  # paused runs whose wait times out
        self._waking: set[asyncio.Task[None]] = set()
        self._continuing: set[str] = set()  # paused runs being loaded to go on (resume, cancel, wake)
        self._ready: asyncio.Task[list[str]] | None = None
        self._pruned_at = 0.0
        self._readers: dict[str, _Readers] = {}  # flows whose live readers wait for their next commit
        self._retiring: asyncio.Task[None] | None = None  # leaving the pool (`set_pool_size`)
        self._closing: asyncio.Event | None = None  # set once its runs are handed over: it only forwards

    async def _ready_once(self) -> None:
        """The first call opens the store and resumes the unfinished runs this coordinator owns."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_task(self._open_and_resume())
        try:
            await asyncio.shield(self._ready)
        except Exception:
            log.exception("coordinator %d: opening the run store or resuming runs failed", self.index)
            self._ready = None  # the next call tries again
            raise

    async def _open_and_resume(self) -> list[str]:
        await self.store.open()
        if self.peers is not None and self.index != 0:
            try:  # the pool's size of now: Ray restarts an actor with the size it was created with
                self.count = await self.peers.call(0, "pool_size")
            except Exception as exc:  # coordinator 0 gone for good: the size known stays
                log.warning("coordinator %d: the pool's size could not be read: %s", self.index, exc)
        resumed = await self.resume_unfinished()
        if self.index >= self.count:
            self._retiring = asyncio.get_running_loop().create_task(self._retire(), name="retire")
        return resumed

    # -- starting runs --------------------------------------------------------------------------

    async def submit(self, body: bytes | dict[str, Any], owner: str = "") -> SubmitOutcome:
        """Start a flow from an `/execute` body (JSON bytes or parsed) for `owner`: `started`,
        `conflict` (its flow id is running, or held by another owner) or `invalid`."""
        await self._ready_once()
        validation = await validate_off_loop(body, self.settings, self.registry)
        heir = self._heir_of_new(validation.request.flow_id if validation.request else None)
        if heir is not None and self.peers is not None:
            answer: SubmitOutcome = await self.peers.call(heir, "submit", body, owner)
            return answer
        return await self._create_and_start(body, validation, owner)

    async def submit_many(self, entries: list[tuple[bytes, str]]) -> list[SubmitOutcome | BaseException]:
        """`submit` for a batch of `(body, owner)` (the ingress's `CallBatcher`): one outcome per
        entry, in order, the new runs recorded in one store write; an id twice in the batch is
        started once (the other entry: `conflict`). An entry that failed alone is a
        `RuntimeError` naming the cause (always picklable), for its caller alone."""
        await self._ready_once()
        admissions: list[_Admission | BaseException] = []
        for body, owner in entries:
            try:
                admissions.append(_Admission(body, await validate_off_loop(body, self.settings, self.registry), owner))
            except Exception as exc:  # a bug tied to this body: its caller alone gets an error
                admissions.append(_portable(exc))
            await asyncio.sleep(0)  # the loop's other work (tokens to relay) between two validations
        outcomes: list[_Admission | SubmitOutcome | BaseException] = []
        for (body, owner), admission in zip(entries, admissions, strict=True):
            request = None if isinstance(admission, BaseException) else admission.validation.request
            heir = self._heir_of_new(request.flow_id if request else None)
            if heir is not None and self.peers is not None:  # late, to a coordinator that has left the pool
                outcomes.append((await self.peers.call(heir, "submit_many", [(body, owner)]))[0])
            else:
                outcomes.append(admission)
        answers = iter(await self._admit([o for o in outcomes if isinstance(o, _Admission)]))
        return [next(answers) if isinstance(o, _Admission) else o for o in outcomes]

    def _heir_of_new(self, flow_id: str | None) -> int | None:
        """The coordinator a new run of `flow_id` goes to instead of this one, which has left the
        pool; None while this one takes new runs (or there is no flow id, the request being
        invalid: it is answered here)."""
        if self._closing is None or flow_id is None:
            return None
        heir = coordinator_index(flow_id, self.count)
        return None if heir == self.index else heir

    async def _create_and_start(
        self,
        body: bytes | dict[str, Any],
        validation: Validation,
        owner: str,
        reuse: Callable[[FlowPlan], tuple[Resume | None, list[Problem]]] | None = None,
    ) -> SubmitOutcome:
        """Record a validated run in the store and start it (`reuse`: what it resumes from)."""
        return (await self._admit([_Admission(body, validation, owner, reuse)]))[0]

    async def _admit(self, admissions: list[_Admission]) -> list[SubmitOutcome]:
        """Record the valid, free runs in the store (one write) and start those it took."""
        answers: list[SubmitOutcome] = []
        chosen: list[tuple[int, _Admission, ExecuteRequest, FlowPlan, Resume | None]] = []
        claimed: set[str] = set()
        for admission in admissions:
            validation = admission.validation
            if not validation.ok:
                answers.append({"outcome": "invalid", "problems": [p.as_dict() for p in validation.problems]})
                continue
            request, plan = validation.request, validation.plan
            assert request is not None and plan is not None
            resume, problems = admission.reuse(plan) if admission.reuse is not None else (None, [])
            if problems:
                answers.append({"outcome": "invalid", "problems": [p.as_dict() for p in problems]})
            elif request.flow_id in self.active or request.flow_id in claimed:
                answers.append({"outcome": "conflict", "flow_id": request.flow_id})
            else:
                claimed.add(request.flow_id)
                chosen.append((len(answers), admission, request, plan, resume))
                answers.append({"outcome": "conflict", "flow_id": request.flow_id})  # until the store takes it
        now = time.time()
        created = await self.store.create_runs(
            [NewRun(r.flow_id, a.owner, a.raw(), r.backend2_ws_url, self.index, now) for _, a, r, _, _ in chosen]
        )
        for (at, admission, request, plan, resume), taken in zip(chosen, created, strict=True):
            if taken:
                self._start(request, plan, admission.owner, resume)
                metrics.flow_started()
                warnings = [p.as_dict() for p in admission.validation.warnings]
                answers[at] = {"outcome": "started", "flow_id": request.flow_id, "warnings": warnings}
        return answers

    # -- re-runs ----------------------------------------------------------------------------------

    @_at_owner
    async def rerun_source(self, flow_id: str, owner: str | None = None) -> RerunSource | None:
        """What a re-run of `flow_id` starts from (its body, snapshot and checkpoints); None if
        unknown or another owner's; `running` when it is running now."""
        await self._ready_once()
        if flow_id in self.active or flow_id in self._continuing:
            return {"running": True, "body": b"", "snapshot": None, "checkpoints": []}
        record = await self._record(flow_id, owner)
        if record is None:
            return None
        checkpoints = await self.store.checkpoints(flow_id)
        return {"running": False, "body": record.body, "snapshot": record.snapshot, "checkpoints": checkpoints}

    async def rerun(
        self, original_id: str, source: RerunSource, request: dict[str, Any], owner: str = ""
    ) -> SubmitOutcome:
        """Start the re-run `request` (a `RerunRequest`) of the run `source` came from."""
        await self._ready_once()
        rerun = RerunRequest.model_validate(request)
        heir = self._heir_of_new(rerun.flow_id)
        if heir is not None and self.peers is not None:  # late, to a coordinator that has left the pool
            answer: SubmitOutcome = await self.peers.call(heir, "rerun", original_id, source, request, owner)
            return answer
        body, from_element, problems = rerun_body(source["body"], rerun, source["snapshot"])
        if problems:
            return {"outcome": "invalid", "problems": [p.as_dict() for p in problems]}

        def reuse(plan: FlowPlan) -> tuple[Resume | None, list[Problem]]:
            reused, problems = reused_checkpoints(plan, from_element, source["checkpoints"])
            return Resume(reused, 0, cached=True, rerun_of=original_id), problems

        validation = await validate_off_loop(body, self.settings, self.registry)
        return await self._create_and_start(body, validation, owner, reuse)

    def _start(
        self,
        request: ExecuteRequest,
        plan: FlowPlan,
        owner: str,
        resume: Resume | None = None,
        cancel: str | None = None,
    ) -> _ActiveFlow:
        flow_id, url = request.flow_id, request.backend2_ws_url
        forwarder = self.outbox.forwarder(flow_id, url)
        run = FlowRun(
            plan=plan,
            initial_inputs=request.initial_inputs,
            sink=forwarder,
            settings=self.settings,
            services=self.services,
            invoker=self.invoker,
            max_execution_time=request.config.max_execution_time,
            redactor=self.redactor,
            on_checkpoint=lambda checkpoint: self.outbox.checkpoint(flow_id, url, checkpoint),
            resume=resume,
        )
        if cancel is not None:
            run.cancel(cancel)
        task = asyncio.get_running_loop().create_task(self._execute(run, forwarder, url), name=f"flow/{flow_id}")
        active = self.active[flow_id] = _ActiveFlow(run, task, url, owner)
        return active

    async def _execute(self, run: FlowRun, forwarder: EventForwarder, url: str) -> None:
        flow_id = run.plan.flow_id
        try:
            await run.run()
        except Exception:
            log.exception("flow %s: the scheduler failed", flow_id)
        finally:
            snapshot = run.snapshot()
            paused = snapshot["status"] == "paused"
            finished_at = None if paused else time.time()
            self.outbox.run_update(flow_id, url, RunUpdate(flow_id, snapshot["status"], snapshot, finished_at))
            await forwarder.close()  # the final flush: events, checkpoints and the run's end in one commit
            if paused:
                self._set_wake(snapshot)
            self.active.pop(flow_id, None)
            self.completed_count += 1
            metrics.flow_completed(snapshot)
            self._released_one()
            await self._prune_now_and_then()

    def _released_one(self) -> None:
        """Count a finished run's state as freed; once nothing has run for `QUIET_BEFORE_RECLAIM`
        seconds, give the memory back (a collection costs tens of milliseconds: never between
        two flows of a busy stream)."""
        self.memory.released(1, idle=False)
        if self.active:
            return
        if self._reclaim_timer is not None:
            self._reclaim_timer.cancel()
        self._reclaim_timer = asyncio.get_running_loop().call_later(QUIET_BEFORE_RECLAIM, self._reclaim_if_idle)

    def _reclaim_if_idle(self) -> None:
        self._reclaim_timer = None
        if not self.active:
            self.memory.released(0, idle=True)

    async def resume_unfinished(self) -> list[str]:
        """Resume the store's unfinished runs that belong to this coordinator — and those of a
        coordinator that no longer exists whose flow ids fall to this one — ; their flow ids."""
        return await self._take_up_unfinished(own=True)

    async def _take_up_unfinished(self, *, own: bool) -> list[str]:
        """`resume_unfinished`; without `own`, only the runs of coordinators that no longer exist."""
        resumed = []
        for record in await self.store.unfinished_runs():
            if record.flow_id in self.active or (record.coordinator == self.index and not own):
                continue
            if record.coordinator != self.index:
                claimed = await self._claimed_orphan(record, any_heir=False)
                if claimed is None:
                    continue
                record = claimed
            if await self._take_up(record):
                log.info("flow %s: resumed after seq %d", record.flow_id, record.last_seq)
                resumed.append(record.flow_id)
        return resumed

    async def _take_up(self, record: RunRecord) -> bool:
        """Go on with a stored run this coordinator owns and does not run: a paused one waits
        (its timer set again), any other resumes; whether it resumed."""
        if record.status == "paused":
            if record.snapshot is not None:
                self._set_wake(record.snapshot)
            return False
        return await self._continue(record) is not None

    async def _claimed_orphan(self, record: RunRecord, *, any_heir: bool) -> RunRecord | None:
        """`record`'s run, claimed for this coordinator, if the coordinator that owns it no
        longer exists (it left the pool, or the pool was created again smaller) and its flow id
        falls to this one under the pool's size of now (`any_heir`: whatever it falls to); else
        None. One that is leaving the pool claims nothing."""
        if self.index >= self.count or (self.peers is not None and self.peers.exists(record.coordinator)):
            return None
        if not any_heir and coordinator_index(record.flow_id, self.count) != self.index:
            return None
        if not await self.store.claim_run(record.flow_id, record.coordinator, self.index):
            return None
        log.info("flow %s: taken over from coordinator %d, which is gone", record.flow_id, record.coordinator)
        return await self.store.get_run(record.flow_id)

    # -- the pool's size ------------------------------------------------------------------------

    async def set_pool_size(self, count: int) -> None:
        """The pool has `count` coordinators now. One whose index is not below leaves the pool
        (`_retire`); the others take over the runs of coordinators that no longer exist."""
        await self._ready_once()
        self.count = count
        if self.index >= count:
            if self._retiring is None:
                self._retiring = asyncio.get_running_loop().create_task(self._retire(), name="retire")
            return
        self._closing = None  # grown back while it was leaving: it takes new runs again
        await self._take_up_unfinished(own=False)

    async def _retire(self) -> None:
        """Leave the pool without losing a flow: take new runs while ingress replicas still
        send them, until no run of this coordinator runs and its streamer has delivered
        everything; then hand each paused run to its heir (`claim_run`, then the heir's
        `adopt`), forward every later call for `RETIRE_LINGER` seconds, and exit (`_exit`).
        Growing back before it exits keeps it in the pool (what it handed over stays handed)."""
        try:
            while True:
                if self.index < self.count:
                    return
                if not self.active and not self._continuing and await self._delivered_all():
                    if not self.active and not self._continuing:  # nothing came in meanwhile
                        break
                await asyncio.sleep(RETIRE_POLL)
            closing = self._closing = asyncio.Event()  # from here on, new runs and calls go to the heirs
            handed: dict[int, list[str]] = {}
            for record in await self.store.unfinished_runs(self.index):
                heir = coordinator_index(record.flow_id, self.count)
                if await self.store.claim_run(record.flow_id, self.index, heir):
                    self._cancel_wake(record.flow_id)
                    handed.setdefault(heir, []).append(record.flow_id)
            closing.set()
            for heir, flow_ids in handed.items():
                await self._tell_heir(heir, flow_ids)
            log.info("coordinator %d: left the pool; %d paused runs handed over", self.index, len(handed))
            await asyncio.sleep(RETIRE_LINGER)
            if self.index >= self.count:
                await self._exit()
        except Exception:
            log.exception("coordinator %d: leaving the pool failed; the next resize tries again", self.index)
            raise
        finally:
            self._retiring = None

    async def _tell_heir(self, heir: int, flow_ids: list[str]) -> None:
        """Ask `heir` to take up the paused runs now its own in the store. If it cannot be asked
        (being restarted), it takes them up at its start, as every coordinator does its own."""
        if self.peers is None:
            return
        try:
            await self.peers.call(heir, "adopt", flow_ids)
        except Exception as exc:
            log.warning(
                "coordinator %d: coordinator %d was not told of %d paused runs: %s",
                self.index,
                heir,
                len(flow_ids),
                exc,
            )

    async def _delivered_all(self) -> bool:
        delivering: int = await self.streamer.delivering.remote()
        return delivering == 0

    async def _exit(self) -> None:
        """The end of a coordinator that has left the pool (the actor stops itself)."""

    async def adopt(self, flow_ids: list[str]) -> None:
        """Take up the runs a coordinator leaving the pool handed to this one (claimed for it
        in the store): a paused run's timer is set here now."""
        await self._ready_once()
        for flow_id in flow_ids:
            record = await self.store.get_run(flow_id)
            if record is None or record.finished or record.coordinator != self.index:
                continue
            if flow_id not in self.active and flow_id not in self._continuing:
                await self._take_up(record)

    async def _owner_elsewhere(self, flow_id: str) -> int | None:
        """The coordinator a call about `flow_id` goes to, or None to answer here. A flow
        belongs to the coordinator the store names; a finished or unknown one is answered
        anywhere (from the shared store). A run whose coordinator no longer exists is claimed
        here — unless this one is leaving the pool: then it goes to its heir."""
        if self.peers is None or flow_id in self.active or flow_id in self._continuing:
            return None
        if self._closing is not None:
            await self._closing.wait()  # while the paused runs are handed over
        record = await self.store.get_run(flow_id)
        if record is None or record.finished or record.coordinator == self.index:
            return None
        if self.peers.exists(record.coordinator):
            return record.coordinator
        if self.index >= self.count:
            return coordinator_index(flow_id, self.count)
        claimed = await self._claimed_orphan(record, any_heir=True)
        if claimed is not None:
            await self._take_up(claimed)
        return None

    async def _continue(
        self,
        record: RunRecord,
        answers: dict[str, dict[str, Any]] | None = None,
        expired: frozenset[str] = frozenset(),
        cancel: str | None = None,
        validation: Validation | None = None,
    ) -> _ActiveFlow | None:
        """Go on with a stored run from its checkpoints (see `Resume`); None if it cannot be
        (then it is closed as failed). `validation`: of `record.body`, when the caller has it."""
        if validation is None:
            validation = await validate_off_loop(record.body, self.settings, self.registry)
        if not validation.ok or validation.request is None or validation.plan is None:
            await self._close_unresumable(record)
            return None
        checkpoints = await self.store.checkpoints(record.flow_id)
        started_at = record.snapshot["started_at"] if record.snapshot else None
        rerun_of = record.snapshot.get("rerun_of") if record.snapshot else None
        resume = Resume(checkpoints, record.last_seq, started_at, answers or {}, expired, rerun_of=rerun_of)
        try:
            active = self._start(validation.request, validation.plan, record.owner, resume, cancel)
        except ValueError:  # checkpoints of elements the flow does not have
            await self._close_unresumable(record)
            return None
        snapshot = active.run.snapshot()
        self.outbox.run_update(record.flow_id, active.url, RunUpdate(record.flow_id, "running", snapshot))
        return active

    # -- paused runs ------------------------------------------------------------------------------

    @_at_owner
    async def resume_paused(
        self, flow_id: str, element_id: str, inputs: dict[str, Any], owner: str | None = None
    ) -> ResumeOutcome:
        """Continue a paused run with `inputs` as the outputs of the element it waits at."""
        await self._ready_once()
        async with self._claim_paused(flow_id, owner, element_id) as record:
            if isinstance(record, dict):
                return record
            validation = await validate_off_loop(record.body, self.settings, self.registry)
            if validation.plan is not None and element_id in validation.plan.elements:
                schema = validation.plan.elements[element_id].definition.input_schema
                problems: list[ProblemInfo] = [
                    {"path": f"inputs.{name}", "message": message, "severity": "error"}
                    for name, spec in schema.items()
                    for message in check_ports(inputs, {name: spec})
                ]
                if problems:
                    return {"outcome": "invalid", "problems": problems}
            self._cancel_wake(flow_id)
            if await self._continue(record, answers={element_id: inputs}, validation=validation) is None:
                return {
                    "outcome": "conflict",
                    "message": "the run could not be resumed: its request no longer validates",
                }
            return {"outcome": "resumed", "flow_id": flow_id}

    @contextlib.asynccontextmanager
    async def _claim_paused(
        self, flow_id: str, owner: str | None, element_id: str | None = None
    ) -> AsyncIterator[RunRecord | ResumeOutcome]:
        """The stored paused run (waiting at `element_id` when given), claimed for the block —
        in `_continuing`, so no other call continues it meanwhile — or why not. A run that has
        just paused is waited for while its task makes its last commit (a caller may act on
        `flow_paused` at once)."""
        await self._let_pausing_end(flow_id)
        if flow_id in self.active or flow_id in self._continuing:
            yield {"outcome": "conflict", "message": "the flow is running, not paused"}
            return
        self._continuing.add(flow_id)
        try:
            yield _paused_or_refusal(await self._record(flow_id, owner), element_id)
        finally:
            self._continuing.discard(flow_id)

    async def _let_pausing_end(self, flow_id: str) -> None:
        """If the run has just paused, wait while its task makes its last commit."""
        ending = self.active.get(flow_id)
        if ending is not None and ending.run.status is FlowStatus.PAUSED:
            await asyncio.wait({ending.task}, timeout=10)

    def _set_wake(self, snapshot: RunSnapshot) -> None:
        """Arm the timer of a paused run's earliest wait timeout, if it has one."""
        wakes = [w["wake_at"] for w in snapshot.get("waiting", []) if w["wake_at"] is not None]
        if not wakes:
            return
        flow_id = snapshot["flow_id"]
        self._cancel_wake(flow_id)
        loop = asyncio.get_running_loop()
        delay = max(0.0, min(wakes) - time.time())
        self._wakes[flow_id] = loop.call_later(delay, self._start_wake, flow_id)

    def _start_wake(self, flow_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._wake(flow_id), name=f"wake/{flow_id}")
        self._waking.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._waking.discard)

    def _cancel_wake(self, flow_id: str) -> None:
        handle = self._wakes.pop(flow_id, None)
        if handle is not None:
            handle.cancel()

    async def _wake(self, flow_id: str) -> None:
        """A paused run's wait timed out: continue it with the waits that are due failing `timed_out`."""
        self._wakes.pop(flow_id, None)
        if self._closing is not None:  # handed over: its heir has set the timer again
            return
        async with self._claim_paused(flow_id, None) as record:
            if isinstance(record, dict):
                return
            now = time.time()
            waiting = record.snapshot.get("waiting", []) if record.snapshot else []
            due = frozenset(w["element_id"] for w in waiting if w["wake_at"] is not None and w["wake_at"] <= now)
            await self._continue(record, expired=due)

    async def _close_unresumable(self, record: RunRecord) -> None:
        """End a stored run that cannot go on (its request no longer validates) as failed: its
        `flow_completed` after its last stored event, its status in the store."""
        flow_id, url = record.flow_id, record.backend2_ws_url
        error: ErrorInfo = {
            "error_type": "resume_failed",
            "message": "the run could not be resumed: its request no longer validates",
        }
        emitter = EventEmitter(flow_id, self.outbox.forwarder(flow_id, url), self.redactor, record.last_seq)
        final = emitter.emit("flow_completed", {"status": "failed", "outputs": {}, "error": error, "duration_ms": None})
        snapshot: RunSnapshot = {
            **_pending_snapshot(record),
            "status": "failed",
            "finished_at": final.timestamp,
            "error": error,
            "last_seq": final.seq,
        }
        self.outbox.run_update(flow_id, url, RunUpdate(flow_id, "failed", snapshot, time.time()))
        await self.outbox.end(flow_id, url)

    def _store_failed(self, flow_ids: list[str], message: str) -> None:
        for flow_id in flow_ids:
            active = self.active.get(flow_id)
            if active is not None and active.run.cancel(
                f"store_unavailable: the run store could not be written ({message})"
            ):
                log.error("flow %s: stopped: the run store could not be written", flow_id)

    async def _prune_now_and_then(self) -> None:
        now = time.time()
        if now - self._pruned_at < min(PRUNE_INTERVAL, max(self.settings.event_retention_seconds, 1.0)):
            return
        self._pruned_at = now
        try:
            await self.store.prune(now - self.settings.event_retention_seconds)
        except Exception as exc:  # pruning again later is harmless
            log.warning("coordinator %d: pruning the run store failed: %s", self.index, exc)

    # -- reading runs -----------------------------------------------------------------------------

    async def _record(self, flow_id: str, owner: str | None) -> RunRecord | None:
        record = await self.store.get_run(flow_id)
        if record is None or owner not in (None, record.owner):
            return None
        return record

    @_at_owner
    async def status(self, flow_id: str, owner: str | None = None) -> RunSnapshot | None:
        """The flow's snapshot; None if unknown, pruned, or not `owner`'s (None: any owner)."""
        return await self._status(flow_id, owner)

    async def _status(self, flow_id: str, owner: str | None = None) -> RunSnapshot | None:
        await self._ready_once()
        active = self.active.get(flow_id)
        if active is not None:
            return active.run.snapshot() if owner in (None, active.owner) else None
        record = await self._record(flow_id, owner)
        if record is None:
            return None
        return record.snapshot or _pending_snapshot(record)

    @_at_owner
    async def definition(self, flow_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The run's flow definition as it was submitted (secrets masked), for the run inspector."""
        await self._ready_once()
        record = await self._record(flow_id, owner)
        if record is None:
            return None
        found: dict[str, Any] = self.redactor.scrub(json.loads(record.body)["flow_definition"])
        return found

    @_at_owner
    async def element(self, flow_id: str, element_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """One element's checkpoint with its full outputs (events may carry them shortened)."""
        if await self._status(flow_id, owner) is None:
            return None
        for checkpoint in await self.store.checkpoints(flow_id):
            if checkpoint.element_id == element_id:
                found: dict[str, Any] = self.redactor.scrub(asdict(checkpoint))  # the store keeps real values
                return found
        return None

    @_at_owner
    async def events(self, flow_id: str, after_seq: int, limit: int, owner: str | None = None) -> list[str] | None:
        """A page of the run's events as JSON texts: at most `limit` and `EVENTS_PAGE_MAX_BYTES`."""
        return await self._events(flow_id, after_seq, limit, owner)

    async def _events(self, flow_id: str, after_seq: int, limit: int, owner: str | None = None) -> list[str] | None:
        if await self._status(flow_id, owner) is None:
            return None
        texts = await self.store.events(flow_id, after_seq, min(max(limit, 1), EVENTS_PAGE_MAX))
        page: list[str] = []
        size = 0
        for text in texts:
            size += len(text)
            if page and size > self.settings.events_page_max_bytes:
                break
            page.append(text)
        return page

    @_at_owner
    async def wait_events(
        self, flow_id: str, after_seq: int, limit: int, owner: str | None = None, timeout: float = 15.0
    ) -> list[str] | None:
        """`events`, but when there is nothing after `after_seq` yet, wait up to `timeout` seconds
        for the flow's next commit (a live reader's long poll); [] when none came."""
        readers = self._readers.get(flow_id) or self._readers.setdefault(flow_id, _Readers())
        readers.count += 1
        try:
            page = await self._events(flow_id, after_seq, limit, owner)  # after joining: no commit is missed
            if page is None or page or timeout <= 0:
                return page
            try:
                await asyncio.wait_for(readers.committed.wait(), timeout)
            except TimeoutError:
                return []
            return await self._events(flow_id, after_seq, limit)
        finally:
            readers.count -= 1
            if readers.count == 0 and self._readers.get(flow_id) is readers:
                del self._readers[flow_id]

    def _committed(self, flow_ids: list[str]) -> None:
        """Wake the live readers of these flows (a new set of readers waits for the next commit)."""
        for flow_id in flow_ids:
            readers = self._readers.pop(flow_id, None)
            if readers is not None:
                readers.committed.set()

    async def runs(self, owner: str | None, status: str | None, limit: int, before: str | None) -> dict[str, Any]:
        """A page of the run history, newest first (see `RunStore.list_runs`)."""
        await self._ready_once()
        page = await self.store.list_runs(owner=owner, status=status, limit=limit, before=before)
        return {"runs": [asdict(run) for run in page.runs], "next": page.next}

    @_at_owner
    async def cancel(
        self, flow_id: str, reason: str = "cancelled by request", owner: str | None = None
    ) -> CancelOutcome:
        """Check and act at once: `unknown` (or not `owner`'s), `not_running` (ended, or already
        being cancelled) with its status, or `cancelled` with its status once that took effect."""
        await self._let_pausing_end(flow_id)
        active = self.active.get(flow_id)
        if active is None:
            paused = await self._cancel_paused(flow_id, reason, owner)
            if paused is not None:  # continued just to be cancelled
                await asyncio.wait({paused.task}, timeout=5)
                return {"outcome": "cancelled", "snapshot": await self._status(flow_id) or paused.run.snapshot()}
        if active is None or owner not in (None, active.owner):
            snapshot = await self._status(flow_id, owner)
            return {"outcome": "unknown"} if snapshot is None else {"outcome": "not_running", "snapshot": snapshot}
        if not active.run.cancel(reason):
            return {"outcome": "not_running", "snapshot": active.run.snapshot()}
        await asyncio.wait({active.task}, timeout=5)
        return {"outcome": "cancelled", "snapshot": await self._status(flow_id) or active.run.snapshot()}

    async def _cancel_paused(self, flow_id: str, reason: str, owner: str | None) -> _ActiveFlow | None:
        async with self._claim_paused(flow_id, owner) as record:
            if isinstance(record, dict):
                return None
            self._cancel_wake(flow_id)
            return await self._continue(record, cancel=reason)

    @_at_owner
    async def delivery_state(self, flow_id: str) -> dict[str, Any] | None:
        """The state of the flow's delivery to Backend 2, from the streamer of its coordinator."""
        state: dict[str, Any] | None = await self.streamer.delivery_state.remote(flow_id)
        return state

    async def stats(self) -> dict[str, Any]:
        await self._ready_once()
        return {"index": self.index, "running": len(self.active), "completed": self.completed_count, **process_usage()}

    async def shutdown(self) -> None:
        for active in list(self.active.values()):
            active.run.cancel("the coordinator is shutting down")
        await asyncio.gather(*(a.task for a in self.active.values()), return_exceptions=True)
        await self.services.aclose()
        await self.store.close()


def _portable(exc: BaseException) -> BaseException:
    """An entry's failure as an exception Ray can always pickle back to the caller."""
    log.error("a submission failed: %s", type(exc).__name__, exc_info=exc)
    return RuntimeError(f"the submission failed: {type(exc).__name__}")


def _paused_or_refusal(record: RunRecord | None, element_id: str | None) -> RunRecord | ResumeOutcome:
    """The run if it is paused (at `element_id`, when given); else why it cannot be continued."""
    if record is None:
        return {"outcome": "unknown"}
    if record.status != "paused" or record.snapshot is None:
        return {"outcome": "conflict", "message": f"the flow is {record.status}, not paused"}
    waiting = [w["element_id"] for w in record.snapshot.get("waiting", [])]
    if element_id is not None and element_id not in waiting:
        where = ", ".join(waiting) or "nothing"
        return {"outcome": "conflict", "message": f"the flow is not paused at '{element_id}' (it waits at: {where})"}
    return record


def _pending_snapshot(record: RunRecord) -> RunSnapshot:
    """A run the store knows but has no snapshot of yet (it was created, then its process died)."""
    return {
        "flow_id": record.flow_id,
        "status": record.status,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "elements": {},
        "outputs": {},
        "error": None,
        "last_seq": record.last_seq,
    }


def _own_streamer(index: int, resource: str) -> Any:
    """Streamer `index`, created on this node when it does not exist yet; a restarted
    coordinator finds the one that exists, wherever it runs. The affinity is hard: Ray 2.60
    places a zero-CPU actor anywhere under a soft one. When the node dies, the streamer dies
    with it (it cannot restart elsewhere) and the coordinator, restarted on another node,
    creates it again there."""
    options = named_actor_options(streamer_name(index), resource, on_node(ray.get_runtime_context().get_node_id()))
    return remote_view(Backend2Streamer).options(**options).remote(index)


@ray.remote
class FlowCoordinator(FlowCoordinatorCore):
    def __init__(self, index: int, count: int):
        make_undumpable()  # nothing of this uid (custom code included) may read its environ or memory
        settings = get_settings()
        configure_logging(settings)
        services = ServiceHub(settings, sandbox=SandboxActorClient(settings))  # custom code runs in the sandbox actor
        streamer = _own_streamer(index, settings.coordinator_resource)
        super().__init__(index, count, streamer, services, open_run_store(settings), peers=RayPeers())

    async def pool_size(self) -> int:
        """The pool's size as this coordinator knows it (coordinator 0's is the pool's, see
        `actors.directory`)."""
        return self.count

    async def stats(self) -> dict[str, Any]:
        await self.streamer.stats.remote()  # wakes a restarted streamer: it resumes its open deliveries
        return await super().stats()

    async def _exit(self) -> None:
        """Stop the streamer (it has delivered everything), then this actor, for good: the
        names are free for a coordinator of this index when the pool grows again."""
        await self.shutdown()
        ray.kill(self.streamer, no_restart=True)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
