"""HTTP ingress: a Ray Serve deployment wrapping a FastAPI app. `serve run serve_app:app`.

Contract: routes only translate HTTP to calls on the coordinator actors and back.
- `POST /execute` → 200 `started` before the flow runs to its end (submissions to one
  coordinator arriving together share one actor call: `engine.call_batching`); 422 with every
  problem and its JSON path (nothing started); 409 when the flow id is running; 413 over `MAX_REQUEST_BYTES`
  (checked while reading, chunked bodies too); 408 when the body takes longer than
  `REQUEST_BODY_TIMEOUT_SECONDS`. Large bodies are validated off the event loop.
- `POST /validate` → the same checks as `/execute` without running anything: 200 `valid`
  with the warnings, or 422 / 413 as above.
- `GET /health` (with the custom-code sandbox's OS isolation level and the coordinator pool's size), `GET /flows` (the run
  history, newest first: `status`, `limit`, `before` cursor), `GET /flows/{id}`,
  `GET /flows/{id}/events?after_seq=N&limit=M` (paginated, from the run store),
  `GET /flows/{id}/elements/{element_id}` (an element's checkpoint, full outputs),
  `GET /flows/{id}/stream` (Server-Sent Events: replay, then live until `flow_completed`),
  `POST /flows/{id}/cancel`, OpenAPI at `/docs`; the run inspector at `/ui` (`web.inspector`),
  the JSON Schemas of the flow body and of the events at `/schemas/flow`, `/schemas/events`. Bearer auth when `API_KEY` / `API_KEYS` is
  set; a flow is visible only to the caller that started it (404 to everyone else).
"""

import asyncio
import json
import logging
import os
from dataclasses import asdict
from typing import Any

import ray
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from ray import serve

from actors.directory import cluster_hosts, ensure_coordinators, follow_pool, store_problem
from actors.names import coordinator_index, pool_size
from actors.ray_types import remote_view
from actors.sandbox import SandboxActorClient
from engine.call_batching import CallBatcher
from engine.contracts import CancelOutcome, ResumeOutcome, RunSnapshot, SubmitOutcome
from engine.limits import MAX_VALUE_DEPTH, depth_exceeds
from engine.logging_setup import configure_logging
from engine.models import ExecuteRequest
from engine.rerun import RerunRequest, RerunSource
from engine.run_store import RunSummary, newest_first, parse_run_cursor, run_cursor
from engine.settings import get_settings
from engine.validation import Validation
from engine.validation_offload import INLINE_LIMIT, validate_off_loop
from runtime.catalog import builtin_registry
from services.sandbox.isolation import make_undumpable
from web import guards, inspector, schema_routes, sse
from web.guards import error_problems
from web.request_body import BodyTooLarge, BodyTooSlow, read_body, refusal
from web.schemas import (
    ElementOut,
    EventsOut,
    FlowStatusOut,
    Health,
    Problems,
    ResumedOut,
    ResumeIn,
    RunsOut,
    Started,
    Validated,
    problems_body,
)

log = logging.getLogger(__name__)

api = FastAPI(
    title="Flow Executor (Backend 1)",
    description="Runs flow graphs on Ray and streams every step to Backend 2 over a WebSocket.",
    version="0.1.0",
)
guards.install(api)
api.include_router(inspector.router)
api.include_router(schema_routes.router)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself (within the request limits)."""
    return {"requestBody": {"content": {"application/json": {"schema": model.model_json_schema()}}, "required": True}}


_EXECUTE_BODY = _body_schema(ExecuteRequest)
_FLOW_ACTION_RESPONSES: dict[int | str, dict[str, Any]] = {404: {}, 409: {}, 413: {}, 422: {"model": Problems}}


def _caller(request: Request) -> str:
    """Who is asking (`web.guards`): flows are visible to the caller that started them only."""
    return getattr(request.state, "caller", "")


def _not_found(flow_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no flow '{flow_id}' (unknown, or its retention time has passed)"}, 404)


# The replica runs this app's code on Serve's own event loop instead of a second thread of its own:
# one loop, no hand-off between two per request (nothing here blocks its loop: large bodies are
# validated in a thread). Measured in bench/bench_peer.py, see docs/BENCHMARKS.md.
INGRESS_ENV = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}

# Serve's controller runs its control loop every 0.1 s by default: ~3 % of a core on an idle
# service, and GCS work with it. Every 0.5 s serves a service whose deployments rarely change
# (replica health checks and autoscaling delays are in seconds). Serve reads it when its
# controller starts, so it must be in the environment of the process that starts Ray:
# `serve run serve_app:app` imports this module first (see `default_ray_env`), a cluster's
# `ray start` has it on its command line (cluster.yaml). Measured in docs/BENCHMARKS.md.
RAY_ENV = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"}


def default_ray_env() -> None:
    """`RAY_ENV` in this process's environment where it is not set (the operator's value wins)."""
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)


default_ray_env()  # before `serve run` starts Ray: its processes inherit this environment


@serve.deployment(
    name="FlowExecutor",
    max_ongoing_requests=1000,
    ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": INGRESS_ENV}},
)
@serve.ingress(api)
class FlowExecutorIngress:
    def __init__(self) -> None:
        make_undumpable()  # nothing of this uid (custom code included) may read its environ or memory
        self.settings = get_settings()
        self.registry = builtin_registry()
        configure_logging(self.settings)
        problem = store_problem(self.settings.run_store_kind(), cluster_hosts())
        if problem is not None:
            raise RuntimeError(problem)  # Serve reports the replica's failure to start, with this message
        self.coordinators = ensure_coordinators(self.settings.coordinator_count, self.settings.coordinator_resource)
        self.submitters: list[CallBatcher[tuple[bytes, str], SubmitOutcome]] = [
            CallBatcher(coordinator.submit_many.remote) for coordinator in self.coordinators
        ]
        self.pool_span = len(self.coordinators)  # coordinators of index up to this one may be leaving the pool
        self.isolation: str | None = None if self.settings.allow_custom_code else "disabled"
        self._isolation_query: asyncio.Future[None] | None = None

    def _index(self, flow_id: str) -> int:
        return coordinator_index(flow_id, len(self.coordinators))

    def _coordinator(self, flow_id: str) -> Any:
        return self.coordinators[self._index(flow_id)]

    async def _submit(self, flow_id: str, body: bytes, caller: str) -> SubmitOutcome:
        """Submissions to one coordinator share actor calls (`CallBatcher`); a body large enough
        to be validated in a thread goes alone, so it never holds up the small ones."""
        if len(body) > INLINE_LIMIT:
            answer: SubmitOutcome = await self._coordinator(flow_id).submit.remote(body, caller)
            return answer
        return await self.submitters[self._index(flow_id)].call((body, caller))

    async def _validated(self, request: Request) -> tuple[bytes, ExecuteRequest, Validation] | JSONResponse:
        """The body, the request and its validation when within the size and time limits and
        valid, else the refusal."""
        try:
            body = await read_body(request, self.settings.max_request_bytes, self.settings.request_body_timeout_seconds)
        except (BodyTooLarge, BodyTooSlow) as exc:
            return refusal(exc)
        validation = await validate_off_loop(body, self.settings, self.registry)
        if not validation.ok or validation.request is None:
            problems = [p.as_dict() for p in validation.problems]
            return JSONResponse(problems_body("the flow is invalid; nothing was started", problems), 422)
        return body, validation.request, validation

    async def _small_body[M: BaseModel](self, request: Request, model: type[M]) -> M | JSONResponse:
        """A JSON body within the request limits (size, time, nesting), as `model`; else the
        refusal: 413, 408, or 422 with every problem and its path."""
        try:
            body = await read_body(request, self.settings.max_request_bytes, self.settings.request_body_timeout_seconds)
            parsed = model.model_validate_json(body)
        except (BodyTooLarge, BodyTooSlow) as exc:
            return refusal(exc)
        except ValidationError as exc:
            return JSONResponse(problems_body("the request is invalid", error_problems(exc.errors())), 422)
        if depth_exceeds(parsed.model_dump(), MAX_VALUE_DEPTH):
            problem = {"path": "$", "message": f"is nested deeper than {MAX_VALUE_DEPTH} levels"}
            return JSONResponse(problems_body("the request is invalid", [problem]), 422)
        return parsed

    @api.post(
        "/execute",
        response_model=Started,
        responses={409: {"description": "flow id already running"}, 413: {}, 422: {"model": Problems}},
        openapi_extra=_EXECUTE_BODY,
    )
    async def execute(self, request: Request) -> Any:
        checked = await self._validated(request)
        if isinstance(checked, JSONResponse):
            return checked
        body, execute_request, _validation = checked
        flow_id = execute_request.flow_id
        answer = await self._submit(flow_id, body, _caller(request))  # the raw bytes
        if answer["outcome"] == "conflict":
            return JSONResponse({"detail": f"flow id '{flow_id}' is in use (running, or another caller's)"}, 409)
        if answer["outcome"] == "invalid":
            return JSONResponse(problems_body("the flow is invalid; nothing was started", answer["problems"]), 422)
        return Started(flow_id=flow_id, warnings=answer["warnings"])

    @api.post(
        "/validate",
        response_model=Validated,
        responses={413: {}, 422: {"model": Problems}},
        openapi_extra=_EXECUTE_BODY,
    )
    async def validate(self, request: Request) -> Any:
        """Check an `/execute` body without running it (for a builder validating as one edits)."""
        checked = await self._validated(request)
        if isinstance(checked, JSONResponse):
            return checked
        _body, execute_request, validation = checked
        warnings = [p.as_dict() for p in validation.warnings]
        return Validated(flow_id=execute_request.flow_id, warnings=warnings)

    @api.get("/health", response_model=Health)
    async def health(self) -> Health:
        if self.isolation is None and (self._isolation_query is None or self._isolation_query.done()):
            self._isolation_query = asyncio.ensure_future(self._ask_isolation())  # never delays /health
        return Health(custom_code_isolation=self.isolation or "unknown", coordinators=len(self.coordinators))

    async def _ask_isolation(self) -> None:
        """The sandboxes' weakest level, asked once: it is fixed for the sandboxes' lifetime."""
        try:
            self.isolation = await SandboxActorClient(self.settings).isolation()
        except Exception as exc:  # starting or unavailable: the next /health asks again
            log.warning("the custom-code sandbox did not report its isolation level: %s", exc)

    async def check_health(self) -> None:
        """Serve's periodic replica check: also resizes the coordinator pool to what the setting
        and the cluster's CPUs give now (`follow_pool`; never on the `memory` store), and wakes
        restarted coordinators and their streamers, which then resume the runs and deliveries
        the store holds open."""
        if self.settings.run_store_kind() != "memory":
            try:
                cpus = (await asyncio.to_thread(ray.cluster_resources)).get("CPU", 0)  # a GCS call: off the loop
                await self._follow_pool(pool_size(self.settings.coordinator_count, cpus))
            except Exception as exc:  # the pool keeps its size until the next check
                log.warning("resizing the coordinator pool failed: %s", exc)
        await asyncio.gather(*(c.stats.remote() for c in self.coordinators))

    async def _follow_pool(self, desired: int) -> None:
        resource = self.settings.coordinator_resource
        pool, self.pool_span = await follow_pool(self.coordinators, desired, self.pool_span, resource)
        if pool is not self.coordinators:
            kept = self.submitters[: len(pool)]
            self.submitters = kept + [CallBatcher(c.submit_many.remote) for c in pool[len(kept) :]]
            self.coordinators = pool
            log.info("the coordinator pool has %d coordinators now", len(pool))

    @api.get("/flows", response_model=RunsOut)
    async def flow_history(
        self,
        request: Request,
        status: str | None = Query(None, max_length=20),
        limit: int = Query(50, ge=1, le=500),
        before: str | None = Query(None, max_length=300),
    ) -> Any:
        """The caller's runs, newest first; the next page is `before` = the answer's `next`."""
        if before is not None and parse_run_cursor(before) is None:
            return JSONResponse({"detail": "before: not a cursor of this API (use the `next` of a page)"}, 400)
        owner = _caller(request)
        shared = self.settings.run_store_kind() != "memory"  # one store holds every coordinator's runs
        asked = self.coordinators[:1] if shared else self.coordinators
        pages = await asyncio.gather(*(c.runs.remote(owner, status, limit, before) for c in asked))
        found = {run["flow_id"]: RunSummary(**run) for page in pages for run in page["runs"]}
        runs = sorted(found.values(), key=newest_first, reverse=True)
        more = len(runs) > limit or any(page["next"] for page in pages)
        kept = runs[:limit]
        return {"runs": [asdict(run) for run in kept], "next": run_cursor(kept[-1]) if more and kept else None}

    @api.get("/flows/{flow_id}", response_model=FlowStatusOut, responses={404: {}})
    async def flow_status(self, flow_id: str, request: Request) -> Any:
        snapshot: RunSnapshot | None = await self._coordinator(flow_id).status.remote(flow_id, _caller(request))
        if snapshot is None:
            return _not_found(flow_id)
        delivery = await self._coordinator(flow_id).delivery_state.remote(flow_id)
        return FlowStatusOut(**snapshot, delivery=delivery)

    @api.get("/flows/{flow_id}/events", response_model=EventsOut, responses={404: {}})
    async def flow_events(
        self, flow_id: str, request: Request, after_seq: int = Query(0, ge=0), limit: int = Query(500, ge=1, le=5000)
    ) -> Any:
        """One page of the flow's event log: up to `limit` events after `after_seq` (next page:
        `after_seq` = the last seq returned; an empty page means nothing more yet)."""
        texts: list[str] | None = await self._coordinator(flow_id).events.remote(
            flow_id, after_seq, limit, _caller(request)
        )
        if texts is None:
            return _not_found(flow_id)
        body = '{"flow_id":' + json.dumps(flow_id) + ',"events":[' + ",".join(texts) + "]}"  # stored JSON as is
        return Response(body, media_type="application/json")

    @api.get("/flows/{flow_id}/definition", responses={404: {}})
    async def flow_definition(self, flow_id: str, request: Request) -> Any:
        """The run's `flow_definition` as submitted (what the run inspector draws)."""
        found = await self._coordinator(flow_id).definition.remote(flow_id, _caller(request))
        if found is None:
            return _not_found(flow_id)
        return {"flow_id": flow_id, "flow_definition": found}

    @api.get(
        "/flows/{flow_id}/stream",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 404: {}},
    )
    async def flow_stream(self, flow_id: str, request: Request, after_seq: int = Query(0, ge=0)) -> Any:
        """Server-Sent Events: the run's events after `after_seq` (or the `Last-Event-ID`
        header), then live until `flow_completed`; `data` is the event as Backend 2 gets it."""
        coordinator = self._coordinator(flow_id)
        owner = _caller(request)
        after = sse.start_seq(after_seq, request.headers.get("last-event-id"))
        first: list[str] | None = await coordinator.wait_events.remote(flow_id, after, 500, owner, 0)
        if first is None:
            return _not_found(flow_id)

        async def fetch(after_seq: int, timeout: float) -> list[str] | None:
            page: list[str] | None = await coordinator.wait_events.remote(flow_id, after_seq, 500, owner, timeout)
            return page

        return StreamingResponse(
            sse.event_stream(fetch, after, first), media_type="text/event-stream", headers=sse.HEADERS
        )

    @api.get("/flows/{flow_id}/elements/{element_id}", response_model=ElementOut, responses={404: {}})
    async def flow_element(self, flow_id: str, element_id: str, request: Request) -> Any:
        """One element's checkpoint: state, attempts, timings, error and its full outputs (an
        event carries a value over `EVENT_VALUE_MAX_BYTES` only as a marker with a preview)."""
        found = await self._coordinator(flow_id).element.remote(flow_id, element_id, _caller(request))
        if found is None:
            return JSONResponse({"detail": f"no element '{element_id}' of flow '{flow_id}' has run"}, 404)
        return found

    @api.post("/flows/{flow_id}/cancel", response_model=FlowStatusOut, responses={404: {}, 409: {}})
    async def cancel(self, flow_id: str, request: Request) -> Any:
        answer: CancelOutcome = await self._coordinator(flow_id).cancel.remote(flow_id, owner=_caller(request))
        if answer["outcome"] == "unknown":
            return _not_found(flow_id)
        if answer["outcome"] == "not_running":
            return JSONResponse({"detail": f"flow '{flow_id}' is not running", "status": answer["snapshot"]}, 409)
        return answer["snapshot"]

    @api.post(
        "/flows/{flow_id}/resume",
        response_model=ResumedOut,
        responses=_FLOW_ACTION_RESPONSES,
        openapi_extra=_body_schema(ResumeIn),
    )
    async def resume(self, flow_id: str, request: Request) -> Any:
        """Continue a paused flow: `inputs` become the outputs of the `wait_for_input` element
        it waits at, checked against that element's `input_schema`."""
        resume = await self._small_body(request, ResumeIn)
        if isinstance(resume, JSONResponse):
            return resume
        answer: ResumeOutcome = await self._coordinator(flow_id).resume_paused.remote(
            flow_id, resume.element_id, resume.inputs, _caller(request)
        )
        if answer["outcome"] == "unknown":
            return _not_found(flow_id)
        if answer["outcome"] == "conflict":
            return JSONResponse({"detail": answer["message"]}, 409)
        if answer["outcome"] == "invalid":
            return JSONResponse(
                problems_body("the inputs do not match the element's input_schema", answer["problems"]), 422
            )
        return ResumedOut(flow_id=flow_id)

    @api.post(
        "/flows/{flow_id}/rerun",
        response_model=Started,
        responses=_FLOW_ACTION_RESPONSES,
        openapi_extra=_body_schema(RerunRequest),
    )
    async def rerun(self, flow_id: str, request: Request) -> Any:
        """A new run (`rerun.flow_id`) of this flow's definition that re-uses every result not
        downstream of `from_element` (reported `cached`) and runs the rest anew."""
        rerun = await self._small_body(request, RerunRequest)
        if isinstance(rerun, JSONResponse):
            return rerun
        owner = _caller(request)
        source: RerunSource | None = await self._coordinator(flow_id).rerun_source.remote(flow_id, owner)
        if source is None:
            return _not_found(flow_id)
        if source["running"]:
            return JSONResponse({"detail": f"flow '{flow_id}' is running: re-run it once it has ended"}, 409)
        new_id = rerun.flow_id
        answer: SubmitOutcome = await self._coordinator(new_id).rerun.remote(flow_id, source, rerun.model_dump(), owner)
        if answer["outcome"] == "conflict":
            return JSONResponse({"detail": f"flow id '{new_id}' is in use (running, or another caller's)"}, 409)
        if answer["outcome"] == "invalid":
            return JSONResponse(problems_body("the re-run is invalid; nothing was started", answer["problems"]), 422)
        return Started(flow_id=new_id, warnings=answer["warnings"])


app = remote_view(FlowExecutorIngress).bind()
