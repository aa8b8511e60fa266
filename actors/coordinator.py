"""FlowCoordinator: the thin Ray shell around the scheduler — orchestration only.

Contract: one async actor runs many flows concurrently (the pool is sized by
`COORDINATOR_COUNT`; flows are assigned by flow id, see `actors.names`). `submit(body)`
validates with the same function as the ingress, refuses a flow id that is already running
(`conflict`), otherwise starts the run as an asyncio task and returns at once. Events go to
the streamer through the coordinator's `EventOutbox`, batched across its flows. `status` answers for running flows and for finished
ones until `EVENT_RETENTION_SECONDS` after they ended; `cancel` checks and acts in one call
(`unknown`, `not_running` with the snapshot, or `cancelled` once it has taken effect) and
reaches running work through the scheduler (which cancels element coroutines, Ray tasks and
sandbox runs). Answers are the shapes of `engine.contracts`. It does no I/O
of its own: elements and `services/` do.

Owners: `submit(body, owner)` records the caller that started the flow (see `web.guards`);
`status` and `cancel` given another owner answer as for an unknown flow (None), so a
caller never reads, cancels or learns the state of another caller's flow. A flow id held by
another caller (running, or finished within retention) is refused as `conflict`: ids are
global (Backend 2 and the event log are keyed by them), so callers should pick random ones.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from dataclasses import dataclass
from typing import Any

import ray

from actors import metrics
from actors.event_forwarder import EventForwarder, EventOutbox
from actors.names import coordinator_index, get_streamer
from actors.placement import RayInvoker
from actors.sandbox import SandboxActorClient
from actors.usage import MemoryReclaimer, process_usage
from engine.contracts import CancelOutcome, ErrorInfo, RunSnapshot, SubmitOutcome
from engine.events import Redactor
from engine.logging_setup import configure_logging
from engine.models import Event, utc_timestamp
from engine.registry import ElementRegistry
from engine.scheduler import FlowRun
from engine.settings import get_settings
from engine.validation_offload import validate_off_loop
from runtime.catalog import builtin_registry
from services.hub import ServiceHub
from services.sandbox.isolation import make_undumpable

log = logging.getLogger(__name__)


@dataclass
class _ActiveFlow:
    run: FlowRun
    task: asyncio.Task[None]
    url: str
    owner: str = ""


@dataclass(frozen=True)
class _FinishedFlow:
    ended: float
    snapshot: RunSnapshot
    owner: str = ""


class FlowCoordinatorCore:
    def __init__(
        self, index: int, count: int, streamer: Any, services: ServiceHub, registry: ElementRegistry | None = None
    ):
        self.index = index
        self.count = count
        self.settings = services.settings
        self.registry = registry or builtin_registry()
        self.streamer = streamer
        self.outbox = EventOutbox(streamer)
        self.services = services
        self.invoker = RayInvoker()
        self.redactor = Redactor(self.settings.secret_values())
        self.active: dict[str, _ActiveFlow] = {}
        self.finished: collections.OrderedDict[str, _FinishedFlow] = collections.OrderedDict()
        self.completed_count = 0
        self.memory = MemoryReclaimer()
        self._recovery: asyncio.Task[list[str]] | None = None

    async def _recover_once(self) -> None:
        """The first call after a (re)start closes flows a crashed incarnation left open."""
        if self._recovery is None:
            self._recovery = asyncio.get_running_loop().create_task(self.recover_orphans())
        try:
            await asyncio.shield(self._recovery)
        except Exception:
            log.exception("coordinator %d: closing orphaned flows failed", self.index)

    async def submit(self, body: bytes | dict[str, Any], owner: str = "") -> SubmitOutcome:
        """Start a flow from an `/execute` body (JSON bytes or parsed) for `owner`: `started`,
        `conflict` (its flow id is running here, or held by another owner) or `invalid`."""
        await self._recover_once()
        validation = await validate_off_loop(body, self.settings, self.registry)
        if not validation.ok:
            return {"outcome": "invalid", "problems": [p.as_dict() for p in validation.problems]}
        request, plan = validation.request, validation.plan
        assert request is not None and plan is not None
        held = self.finished.get(request.flow_id)
        if request.flow_id in self.active or (held is not None and held.owner != owner):
            return {"outcome": "conflict", "flow_id": request.flow_id}
        forwarder = self.outbox.forwarder(request.flow_id, request.backend2_ws_url)
        run = FlowRun(
            plan=plan,
            initial_inputs=request.initial_inputs,
            sink=forwarder,
            settings=self.settings,
            services=self.services,
            invoker=self.invoker,
            max_execution_time=request.config.max_execution_time,
            redactor=self.redactor,
        )
        self.finished.pop(request.flow_id, None)
        task = asyncio.get_running_loop().create_task(self._execute(run, forwarder), name=f"flow/{request.flow_id}")
        self.active[request.flow_id] = _ActiveFlow(run, task, request.backend2_ws_url, owner)
        metrics.flow_started()
        return {
            "outcome": "started",
            "flow_id": request.flow_id,
            "warnings": [p.as_dict() for p in validation.warnings],
        }

    async def _execute(self, run: FlowRun, forwarder: EventForwarder) -> None:
        flow_id = run.plan.flow_id
        owner = self.active[flow_id].owner
        try:
            await run.run()
        except Exception:
            log.exception("flow %s: the scheduler failed", flow_id)
        finally:
            await forwarder.close()
            self.active.pop(flow_id, None)
            snapshot = run.snapshot()
            self.finished[flow_id] = _FinishedFlow(time.monotonic(), snapshot, owner)
            self.completed_count += 1
            metrics.flow_completed(snapshot)
            self._expire()

    def _expire(self) -> None:
        horizon = time.monotonic() - self.settings.event_retention_seconds
        expired = 0
        while self.finished:
            if next(iter(self.finished.values())).ended > horizon:
                break
            self.finished.popitem(last=False)
            expired += 1
        self.memory.released(expired, idle=not self.active and not self.finished)

    async def status(self, flow_id: str, owner: str | None = None) -> RunSnapshot | None:
        """The flow's snapshot; None if unknown, expired, or not `owner`'s (None: any owner)."""
        await self._recover_once()
        self._expire()
        active = self.active.get(flow_id)
        if active is not None:
            return active.run.snapshot() if owner in (None, active.owner) else None
        finished = self.finished.get(flow_id)
        return finished.snapshot if finished is not None and owner in (None, finished.owner) else None

    async def cancel(
        self, flow_id: str, reason: str = "cancelled by request", owner: str | None = None
    ) -> CancelOutcome:
        """Check and act at once: `unknown` (or not `owner`'s), `not_running` (ended, or already
        being cancelled) with its status, or `cancelled` with its status once that took effect."""
        active = self.active.get(flow_id)
        if active is None or owner not in (None, active.owner):
            snapshot = await self.status(flow_id, owner)
            return {"outcome": "unknown"} if snapshot is None else {"outcome": "not_running", "snapshot": snapshot}
        if not active.run.cancel(reason):
            return {"outcome": "not_running", "snapshot": active.run.snapshot()}
        await asyncio.wait({active.task}, timeout=5)
        return {"outcome": "cancelled", "snapshot": await self.status(flow_id) or active.run.snapshot()}

    async def stats(self) -> dict[str, Any]:
        await self._recover_once()
        self._expire()
        return {
            "index": self.index,
            "running": len(self.active),
            "retained": len(self.finished),
            "completed": self.completed_count,
            **process_usage(),
        }

    async def recover_orphans(self) -> list[str]:
        """Close the flows a previous incarnation of this coordinator left running.

        After a crash and restart (`max_restarts`), those flows have no scheduler any more: each
        gets an `element_error`-free `flow_completed` with status `failed` and a clear error,
        numbered after the last event the streamer holds, and a `failed` status record.
        """
        orphans = [
            flow
            for flow in await self.streamer.open_flows.remote()
            if coordinator_index(flow["flow_id"], self.count) == self.index and flow["flow_id"] not in self.active
        ]
        for flow in orphans:
            error: ErrorInfo = {
                "error_type": "coordinator_failed",
                "message": "the coordinator running this flow stopped unexpectedly; the flow was abandoned",
            }
            event = Event(
                type="flow_completed",
                flow_id=flow["flow_id"],
                seq=flow["last_seq"] + 1,
                timestamp=utc_timestamp(),
                data={"status": "failed", "outputs": {}, "error": error, "duration_ms": None},
            )
            await self.streamer.publish.remote(flow["flow_id"], flow["url"], [event.to_message()], True)
            snapshot: RunSnapshot = {
                "flow_id": flow["flow_id"],
                "status": "failed",
                "started_at": None,
                "finished_at": utc_timestamp(),
                "duration_ms": None,
                "elements": {},
                "outputs": {},
                "error": error,
                "last_seq": flow["last_seq"] + 1,
            }
            self.finished[flow["flow_id"]] = _FinishedFlow(
                time.monotonic(), snapshot
            )  # no owner: it was in the dead incarnation's memory
        return [flow["flow_id"] for flow in orphans]

    async def shutdown(self) -> None:
        for active in list(self.active.values()):
            active.run.cancel("the coordinator is shutting down")
        await asyncio.gather(*(a.task for a in self.active.values()), return_exceptions=True)
        await self.services.aclose()


@ray.remote
class FlowCoordinator(FlowCoordinatorCore):
    def __init__(self, index: int, count: int):
        make_undumpable()  # nothing of this uid (custom code included) may read its environ or memory
        settings = get_settings()
        configure_logging(settings)
        services = ServiceHub(settings, sandbox=SandboxActorClient(settings))  # custom code runs in the sandbox actor
        super().__init__(index, count, get_streamer(), services)
