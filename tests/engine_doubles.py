"""Test-only element types for exercising the scheduler (sleep, fail, flaky, echo, route, hang), the
registry of the built-in types plus these (`TEST_REGISTRY`), and the engine's entry points bound
to it (`validate_request`, `prepare_run`, `prepare_durable_run`, `run_local`)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict

from engine import validation
from engine.element import ElementBase, ElementContext, ElementResult
from engine.errors import ElementError, TransientError
from engine.models import Event
from engine.settings import Settings
from runtime import local
from runtime.catalog import builtin_registry

CALLS: dict[str, list[float]] = {}


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = 0.0
    failures: int = 0
    port: str | None = None
    value: Any = None


def _mark(ctx: ElementContext, what: str) -> None:
    CALLS.setdefault(f"{ctx.flow_id}/{ctx.element_id}/{what}", []).append(time.monotonic())


class EchoElement(ElementBase[_Config]):
    """Sleeps `seconds`, then outputs its inputs (plus `value` under `echo` when set)."""

    type_name = "test_echo"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        _mark(ctx, "start")
        if self.config.seconds:
            await asyncio.sleep(self.config.seconds)
        _mark(ctx, "end")
        out = dict(inputs)
        if self.config.value is not None:
            out["echo"] = self.config.value
        return out


class FailElement(ElementBase[_Config]):
    type_name = "test_fail"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> NoReturn:
        raise ElementError("boom: this element always fails", error_type="test_failure")


class FlakyElement(ElementBase[_Config]):
    """Fails transiently `failures` times per flow, then succeeds."""

    type_name = "test_flaky"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        _mark(ctx, "attempt")
        if len(CALLS[f"{ctx.flow_id}/{ctx.element_id}/attempt"]) <= self.config.failures:
            raise TransientError("throttled, try again", error_type="throttled")
        return {"ok": True}


class RouteElement(ElementBase[_Config]):
    """Routes to the configured `port` (branches: yes, no, default)."""

    type_name = "test_route"
    routes = True

    def branch_ports(self) -> frozenset[str]:
        return frozenset({"yes", "no", "default"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        return ElementResult(outputs=dict(inputs), ports=frozenset({self.config.port or "default"}))


class ChunkElement(ElementBase[_Config]):
    type_name = "test_chunks"
    streams = True

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        text = ""
        for piece in ["a", "b", "c"]:
            ctx.emit_chunk(piece)
            text += piece
            await asyncio.sleep(0)
        return {"text": text}


class HangElement(ElementBase[_Config]):
    """The first time it runs in a flow it hangs until cancelled, like an element whose process
    stopped under it; after that it outputs its inputs, like `test_echo`."""

    type_name = "test_hang"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        _mark(ctx, "start")
        if len(CALLS[f"{ctx.flow_id}/{ctx.element_id}/start"]) == 1:
            await asyncio.Event().wait()
        return dict(inputs)


TEST_REGISTRY = builtin_registry().with_types(
    EchoElement, FailElement, FlakyElement, RouteElement, ChunkElement, HangElement
)


def validate_request(body: Any, settings: Settings) -> validation.Validation:
    return validation.validate_request(body, settings, TEST_REGISTRY)


def prepare_run(body: Any, settings: Settings, sink: Any, services: Any = None, invoker: Any = None) -> Any:
    return local.prepare_run(body, settings, sink, services, invoker, registry=TEST_REGISTRY)


def prepare_durable_run(
    body: Any, settings: Settings, sink: Any, on_checkpoint: Any, resume: Any = None, invoker: Any = None
) -> Any:
    """`prepare_run` with a checkpoint callback and, to continue a stored run, a `Resume`."""
    return dataclasses.replace(
        prepare_run(body, settings, sink, invoker=invoker), on_checkpoint=on_checkpoint, resume=resume
    )


async def run_local(body: Any, settings: Settings | None = None, services: Any = None) -> Any:
    return await local.run_local(body, settings, services, registry=TEST_REGISTRY)


def flow(
    elements: dict[str, dict[str, Any]],
    connections: Sequence[tuple[str | None, ...]],
    *,
    start: str = "s",
    inputs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    flow_id: str = "f-1",
) -> dict[str, Any]:
    """A request body: elements as {id: {type, ...}}, connections as (from, to[, from_output, to_input])
    (a `None` output or input: the default port)."""
    defs = {eid: {"element_id": eid, **spec} for eid, spec in elements.items()}
    conns = []
    for item in connections:
        conn = {"from_id": item[0], "to_id": item[1]}
        if len(item) > 2 and item[2]:
            conn["from_output"] = item[2]
        if len(item) > 3 and item[3]:
            conn["to_input"] = item[3]
        conns.append(conn)
    return {
        "flow_id": flow_id,
        "flow_definition": {"flow_id": flow_id, "elements": defs, "connections": conns, "start_element_id": start},
        "initial_inputs": inputs or {},
        "backend2_ws_url": "ws://127.0.0.1:9/ws",
        "config": config or {},
    }


def assert_well_formed(events: Sequence[Event]) -> None:
    """seq contiguous from 1, flow_started first, flow_completed last and only once."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == "flow_started"
    assert events[-1].type == "flow_completed"
    assert sum(e.type == "flow_completed" for e in events) == 1
