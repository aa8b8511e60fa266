"""TASK placement: an element in a Ray task of its own, named flow/element, cancelled for real."""

import asyncio
import time

import pytest

from actors.placement import RayInvoker
from engine.element import ElementBase, ElementContext, NoConfig, Placement
from engine.models import ElementDefinition
from engine.settings import Settings
from tests.ray_state import wait_for_tasks

pytestmark = pytest.mark.ray


class Crunch(ElementBase[NoConfig]):
    """CPU-bound stand-in: sleeps in a blocking call (as a C extension would) then answers."""

    type_name = "test_crunch_unregistered"
    placement = Placement.TASK

    async def execute(self, inputs, ctx):
        import os

        time.sleep(inputs.get("seconds", 0))
        return {"pid": os.getpid(), "double": inputs["x"] * 2}


def crunch():
    definition = ElementDefinition(type="test_crunch_unregistered", element_id="crunch")
    return Crunch(definition, Crunch.Config())


def ctx(element_id="crunch"):
    settings = Settings(_env_file=None)
    return ElementContext(flow_id="flow-t", element_id=element_id, settings=settings, services=None)


async def test_task_elements_run_in_another_process(ray_runtime):
    import os

    result = await RayInvoker().invoke(crunch(), {"x": 21}, ctx())
    assert result.outputs["double"] == 42 and result.outputs["pid"] != os.getpid()


async def test_cancelling_a_task_element_cancels_the_ray_task(ray_runtime, dashboard_url):
    invocation = asyncio.ensure_future(RayInvoker().invoke(crunch(), {"x": 1, "seconds": 60}, ctx("crunch-cancelled")))
    await asyncio.sleep(2)
    invocation.cancel()
    with pytest.raises(asyncio.CancelledError):
        await invocation

    def ended(tasks):
        return tasks and all(t.state in ("FAILED", "CANCELED") for t in tasks)

    tasks = await asyncio.to_thread(wait_for_tasks, dashboard_url, "flow-t/crunch-cancelled", ended)
    assert tasks and all(t.state in ("FAILED", "CANCELED") for t in tasks), [t.state for t in tasks]
