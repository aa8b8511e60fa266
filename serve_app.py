"""HTTP ingress: a Ray Serve deployment wrapping a FastAPI app. `serve run serve_app:app`.

Contract: routes only translate HTTP to calls on the coordinator and streamer actors and back.
- `POST /execute` → 200 `started` before the flow runs to its end; 422 with every problem and
  its JSON path (nothing started); 409 when the flow id is running; 413 over `MAX_REQUEST_BYTES`.
- `POST /validate` → the same checks as `/execute` without running anything: 200 `valid`
  with the warnings, or 422 / 413 as above.
- `GET /health`, `GET /flows/{id}`, `GET /flows/{id}/events?after_seq=N`,
  `POST /flows/{id}/cancel`, OpenAPI at `/docs`. Bearer auth when `API_KEY` is set.
"""

import asyncio
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from ray import serve

from actors.directory import coordinator_index, ensure_actors, get_streamer
from engine.logging_setup import configure_logging
from engine.models import ExecuteRequest
from engine.settings import get_settings
from engine.validation import Validation, validate_request
from web import guards
from web.schemas import EventsOut, FlowStatusOut, Health, Problems, Started, Validated, problems_body

api = FastAPI(
    title="Flow Executor (Backend 1)",
    description="Runs flow graphs on Ray and streams every step to Backend 2 over a WebSocket.",
    version="0.1.0",
)
guards.install(api)

_EXECUTE_BODY = {"requestBody": {"content": {"application/json": {"schema": ExecuteRequest.model_json_schema()}}}}


def _not_found(flow_id: str) -> JSONResponse:
    return JSONResponse({"detail": f"no flow '{flow_id}' (unknown, or its retention time has passed)"}, 404)


@serve.deployment(name="FlowExecutor", max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class FlowExecutorIngress:
    def __init__(self) -> None:
        self.settings = get_settings()
        configure_logging(self.settings)
        self.coordinators = ensure_actors(self.settings.coordinator_count)
        self.streamer = get_streamer()

    def _coordinator(self, flow_id: str) -> Any:
        return self.coordinators[coordinator_index(flow_id, len(self.coordinators))]

    async def _validated(self, request: Request) -> tuple[bytes, Validation] | JSONResponse:
        """The body and its validation when within the size limit and valid, else the refusal."""
        too_big = JSONResponse({"detail": f"body over {self.settings.max_request_bytes} bytes"}, 413)
        declared = request.headers.get("content-length", "0")
        if declared.isdigit() and int(declared) > self.settings.max_request_bytes:
            return too_big
        body = await request.body()
        if len(body) > self.settings.max_request_bytes:
            return too_big
        validation = validate_request(body, self.settings)
        if not validation.ok:
            problems = [p.as_dict() for p in validation.problems]
            return JSONResponse(problems_body("the flow is invalid; nothing was started", problems), 422)
        return body, validation

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
        body, validation = checked
        flow_id = validation.request.flow_id
        answer = await self._coordinator(flow_id).submit.remote(body)  # raw bytes: cheapest to ship
        if answer["outcome"] == "conflict":
            return JSONResponse({"detail": f"flow '{flow_id}' is already running"}, 409)
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
        warnings = [p.as_dict() for p in checked[1].warnings]
        return Validated(flow_id=checked[1].request.flow_id, warnings=warnings)

    @api.get("/health", response_model=Health)
    async def health(self) -> Health:
        return Health()

    async def check_health(self) -> None:
        """Serve's periodic replica check: also wakes restarted coordinators, which then close
        the flows their crashed incarnation left open (see FlowCoordinatorCore.recover_orphans)."""
        await asyncio.gather(*(c.stats.remote() for c in self.coordinators))

    @api.get("/flows/{flow_id}", response_model=FlowStatusOut, responses={404: {}})
    async def flow_status(self, flow_id: str) -> Any:
        status = await self._coordinator(flow_id).status.remote(flow_id)
        if status is None:
            return _not_found(flow_id)
        status["delivery"] = await self.streamer.delivery_state.remote(flow_id)
        return status

    @api.get("/flows/{flow_id}/events", response_model=EventsOut, responses={404: {}})
    async def flow_events(self, flow_id: str, after_seq: int = Query(0, ge=0)) -> Any:
        events = await self.streamer.events.remote(flow_id, after_seq)
        if events is None:
            return _not_found(flow_id)
        return EventsOut(flow_id=flow_id, events=events)

    @api.post("/flows/{flow_id}/cancel", response_model=FlowStatusOut, responses={404: {}, 409: {}})
    async def cancel(self, flow_id: str) -> Any:
        coordinator = self._coordinator(flow_id)
        was_running = await coordinator.status.remote(flow_id)
        if was_running is None:
            return _not_found(flow_id)
        if was_running["status"] != "running":
            return JSONResponse({"detail": f"flow '{flow_id}' is not running", "status": was_running}, 409)
        return await coordinator.cancel.remote(flow_id)


app = FlowExecutorIngress.bind()
