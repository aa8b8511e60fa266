"""Running a flow in this process, without Ray: for tests, benchmarks and embedding.

Contract: `run_local(body, settings)` validates like `/execute` (raising `InvalidFlow` with
every problem), runs the flow with the inline invoker and returns the final status snapshot
and the list of events emitted, in `seq` order. Element types come from `registry` (default:
the built-in ones), services from `services` (default: a fresh `ServiceHub`).
"""

from __future__ import annotations

from typing import Any

from engine.contracts import RunSnapshot
from engine.events import EventSink, Redactor
from engine.models import Event
from engine.ports import Services
from engine.registry import ElementRegistry
from engine.scheduler import ElementInvoker, FlowRun, InlineInvoker
from engine.settings import Settings
from engine.validation import Problem, validate_request
from runtime.catalog import builtin_registry
from services.hub import ServiceHub


class InvalidFlow(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def prepare_run(
    body: Any,
    settings: Settings,
    sink: EventSink,
    services: Services | None = None,
    invoker: ElementInvoker | None = None,
    registry: ElementRegistry | None = None,
) -> FlowRun:
    validation = validate_request(body, settings, registry or builtin_registry())
    if not validation.ok:
        raise InvalidFlow(validation.errors)
    request = validation.request
    assert request is not None and validation.plan is not None
    return FlowRun(
        plan=validation.plan,
        initial_inputs=request.initial_inputs,
        sink=sink,
        settings=settings,
        services=services or ServiceHub(settings),
        invoker=invoker or InlineInvoker(),
        max_execution_time=request.config.max_execution_time,
        redactor=Redactor(settings.secret_values()),
    )


async def run_local(
    body: Any,
    settings: Settings | None = None,
    services: Services | None = None,
    registry: ElementRegistry | None = None,
) -> tuple[RunSnapshot, list[Event]]:
    events: list[Event] = []
    run = prepare_run(body, settings or Settings(), events.append, services, registry=registry)
    snapshot = await run.run()
    return snapshot, events
