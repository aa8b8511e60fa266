"""Iteration cost: a 1,000-item `iteration` in our engine beside LangGraph's `Send` map-reduce,
measured in the same run and the same process.

Both map a no-op step over 1,000 items and collect the results in item order. Ours: an
`iteration` whose sub-flow is start → `bench_noop` → end (three element runs and about eight
events per item, to a list sink; validation excluded, as in bench_engine). LangGraph: a node
returning 1,000 `Send("work", {...})`, a no-op `work` node, results gathered by an `operator.add`
reducer. Two shapes: trivial items (the fixed cost per item), and items that await 10 ms of
I/O with 16 at once (`parallelism` 16 / `max_concurrency` 16: how well each overlaps waiting).
Prints `name: value unit` lines.
"""

from __future__ import annotations

import asyncio
import operator
import statistics
import time
from typing import Annotated, Any, TypedDict

from pydantic import BaseModel, ConfigDict

from bench.noop_element import BENCH_REGISTRY
from engine.element import ElementBase, ElementContext
from engine.models import Event
from engine.scheduler import FlowRun
from engine.settings import Settings
from engine.validation import validate_request
from services.hub import ServiceHub

SETTINGS = Settings(max_element_runs_per_flow=100_000)
ITEMS = 1000
IO_SECONDS = 0.01


class _WaitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: float = IO_SECONDS


class WaitElement(ElementBase[_WaitConfig]):
    """Awaits `seconds` (an I/O call's wait), then outputs its inputs."""

    type_name = "bench_wait"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        await asyncio.sleep(self.config.seconds)
        return inputs


REGISTRY = BENCH_REGISTRY.with_types(WaitElement)


def iteration_body(step: str, parallelism: int) -> dict[str, Any]:
    inner = {
        "start_element_id": "s",
        "elements": {
            "s": {"type": "start", "element_id": "s"},
            "w": {"type": step, "element_id": "w"},
            "e": {"type": "end", "element_id": "e"},
        },
        "connections": [{"from_id": "s", "to_id": "w"}, {"from_id": "w", "to_id": "e"}],
    }
    return {
        "flow_id": "bench-iter",
        "flow_definition": {
            "flow_id": "bench-iter",
            "start_element_id": "s",
            "elements": {
                "s": {"type": "start", "element_id": "s"},
                "each": {"type": "iteration", "element_id": "each", "parallelism": parallelism, "flow": inner},
                "e": {"type": "end", "element_id": "e"},
            },
            "connections": [{"from_id": "s", "to_id": "each"}, {"from_id": "each", "to_id": "e"}],
        },
        "initial_inputs": {"items": list(range(ITEMS))},
        "backend2_ws_url": "ws://127.0.0.1:9/ws",
    }


async def ours_ms(step: str, parallelism: int, rounds: int) -> tuple[float, int]:
    body = iteration_body(step, parallelism)
    plan = validate_request(body, SETTINGS, REGISTRY).plan
    assert plan is not None
    hub = ServiceHub(SETTINGS)
    samples: list[float] = []
    events: list[Event] = []
    for _ in range(rounds):
        events = []
        run = FlowRun(
            plan=plan, initial_inputs=body["initial_inputs"], sink=events.append, settings=SETTINGS, services=hub
        )
        t0 = time.perf_counter()
        snapshot = await run.run()
        samples.append((time.perf_counter() - t0) * 1000)
        assert snapshot["status"] == "completed" and len(snapshot["outputs"]["results"]) == ITEMS
    return statistics.median(samples), len(events)


class MapState(TypedDict, total=False):
    items: list[int]
    results: Annotated[list[Any], operator.add]


class ItemState(TypedDict):
    item: int
    index: int


def langgraph_map(wait: bool) -> Any:
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    def fan_out(state: MapState) -> list[Any]:
        return [Send("work", {"item": item, "index": index}) for index, item in enumerate(state["items"])]

    async def work(state: ItemState) -> dict[str, Any]:
        if wait:
            await asyncio.sleep(IO_SECONDS)
        return {"results": [(state["index"], {"item": state["item"], "index": state["index"]})]}

    graph = StateGraph(MapState)
    graph.add_node("work", work)
    graph.add_conditional_edges(START, fan_out, ["work"])
    graph.add_edge("work", END)
    return graph.compile()


async def langgraph_ms(wait: bool, rounds: int) -> float:
    compiled = langgraph_map(wait)
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        state = await compiled.ainvoke({"items": list(range(ITEMS))}, {"max_concurrency": 16})
        results = [value for _, value in sorted(state["results"], key=lambda pair: pair[0])]  # item order
        samples.append((time.perf_counter() - t0) * 1000)
        assert len(results) == ITEMS
    return statistics.median(samples)


async def main() -> None:
    await ours_ms("bench_noop", 1, 2)  # warm up
    trivial, events = await ours_ms("bench_noop", 1, 10)
    waiting, _ = await ours_ms("bench_wait", 16, 5)
    print(f"iteration_1000_trivial_items: {trivial:.1f} ms")
    print(f"iteration_per_trivial_item: {trivial / ITEMS * 1000:.1f} us")
    print(f"iteration_events_per_run: {events} events")
    print(f"iteration_1000_items_10ms_io_parallelism16: {waiting:.1f} ms")
    print(f"ideal_1000_items_10ms_io_16_at_once: {ITEMS / 16 * IO_SECONDS * 1000:.1f} ms")
    try:
        await langgraph_ms(False, 2)
    except ImportError:
        return
    lg_trivial = await langgraph_ms(False, 10)
    lg_waiting = await langgraph_ms(True, 5)
    print(f"langgraph_send_1000_trivial_items: {lg_trivial:.1f} ms")
    print(f"langgraph_send_1000_items_10ms_io_concurrency16: {lg_waiting:.1f} ms")
    print(f"iteration_vs_langgraph_trivial: {trivial / lg_trivial:.2f} x")
    print(f"iteration_vs_langgraph_10ms_io: {waiting / lg_waiting:.2f} x")


if __name__ == "__main__":
    asyncio.run(main())
