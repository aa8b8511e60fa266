"""Where each kind of element runs under Ray — the runtime's `ElementInvoker`.

Contract (measured on 2 cores: a fresh Ray worker ~350 ms, an actor call ~1 ms, a task on a
warm worker a few ms):
- `INLINE` and `IO` elements run in the coordinator's event loop. Trivial ones take
  microseconds; I/O ones await network calls made by `services/` (blocking SDKs in threads).
  A Ray task each would cost more than the work.
- `SANDBOX` elements also start in the loop; their `execute` awaits the sandbox service, which
  the runtime overrides with the client of the sandbox actor (fork server, one process per run).
- `TASK` elements (CPU-heavy) run as a Ray task named `flow_id/element_id`; cancelling the
  coroutine cancels the task (`ray.cancel(force=True)`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from engine.element import AnyElement, ElementContext, ElementResult, Placement
from engine.scheduler import as_result


def run_element_task(element: AnyElement, inputs: dict[str, Any], flow_id: str, element_id: str) -> ElementResult:
    """A CPU-heavy element in a Ray worker of its own (no chunk streaming from here)."""
    from engine.settings import get_settings
    from services.hub import ServiceHub

    settings = get_settings()
    ctx = ElementContext(flow_id=flow_id, element_id=element_id, settings=settings, services=ServiceHub(settings))
    return as_result(asyncio.run(element.execute(inputs, ctx)))


_remote_task = ray.remote(num_cpus=1, max_retries=0)(run_element_task)


class RayInvoker:
    async def invoke(self, element: AnyElement, inputs: dict[str, Any], ctx: ElementContext) -> ElementResult:
        if element.placement is not Placement.TASK:
            return as_result(await element.execute(inputs, ctx))
        ref = _remote_task.options(name=f"{ctx.flow_id}/{ctx.element_id}").remote(
            element, inputs, ctx.flow_id, ctx.element_id
        )
        try:
            result: ElementResult = await ref
            return result
        except asyncio.CancelledError:
            ray.cancel(ref, force=True)
            raise
