"""Running a flow in this process, without Ray: for tests, benchmarks and embedding.

Contract: `run_local(body, settings)` validates like `/execute` (raising `InvalidFlow` with
every problem), runs the flow with the inline invoker and returns the final status snapshot
and the list of events emitted, in `seq` order.
"""

from __future__ import annotations

from typing import Any

from engine.events import Redactor
from engine.models import Event
from engine.scheduler import ElementInvoker, FlowRun, InlineInvoker
from engine.settings import Settings
from engine.validation import Problem, validate_request
from services.hub import ServiceHub


class InvalidFlow(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def prepare_run(
    body: Any,
    settings: Settings,
    sink: Any,
    services: ServiceHub | None = None,
    invoker: ElementInvoker | None = None,
) -> FlowRun:
    validation = validate_request(body, settings)
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
    body: Any, settings: Settings | None = None, services: ServiceHub | None = None
) -> tuple[dict[str, Any], list[Event]]:
    events: list[Event] = []
    run = prepare_run(body, settings or Settings(), events.append, services)
    snapshot = await run.run()
    return snapshot, events
