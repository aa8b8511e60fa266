"""Engine overhead per trivial element, beside LangGraph measured in the same run.

Shapes: a 10-element chain and a 50-element fan-out/fan-in (start → 50 → join). Our engine runs
with events going to a list sink (validation excluded: it is done once per request and
measured separately); LangGraph runs an equivalent StateGraph of no-op nodes with `ainvoke`.
Prints `name: value unit` lines.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from typing import Any

from bench.noop_element import BENCH_REGISTRY
from engine.models import Event
from engine.scheduler import FlowRun
from engine.settings import Settings
from engine.validation import validate_request
from services.hub import ServiceHub

SETTINGS = Settings()


def _body(elements: dict[str, dict[str, Any]], connections: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "flow_id": "bench",
        "flow_definition": {
            "flow_id": "bench",
            "elements": {eid: {"element_id": eid, **spec} for eid, spec in elements.items()},
            "connections": [{"from_id": a, "to_id": b} for a, b in connections],
            "start_element_id": "s",
        },
        "initial_inputs": {"x": 1},
        "backend2_ws_url": "ws://127.0.0.1:9/ws",
    }


def chain(n: int) -> dict[str, Any]:
    ids = ["s", *[f"e{i}" for i in range(1, n)]]
    return _body({i: {"type": "bench_noop"} for i in ids}, list(itertools.pairwise(ids)))


def fan(n: int) -> dict[str, Any]:
    middle = [f"m{i}" for i in range(n - 2)]
    elements = {i: {"type": "bench_noop"} for i in ["s", *middle, "join"]}
    return _body(elements, [("s", m) for m in middle] + [(m, "join") for m in middle])


async def engine_per_element_ms(body: dict[str, Any], n: int, rounds: int) -> float:
    plan = validate_request(body, SETTINGS, BENCH_REGISTRY).plan
    assert plan is not None
    hub = ServiceHub(SETTINGS)
    samples = []
    for _ in range(rounds):
        events: list[Event] = []
        run = FlowRun(plan=plan, initial_inputs={"x": 1}, sink=events.append, settings=SETTINGS, services=hub)
        t0 = time.perf_counter()
        await run.run()
        samples.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(samples)


def langgraph_graph(shape: str, n: int) -> Any:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        x: int

    def noop(state: State) -> State:
        return {}

    graph = StateGraph(State)
    if shape == "chain":
        ids = [f"n{i}" for i in range(n)]
        for i in ids:
            graph.add_node(i, noop)
        graph.add_edge(START, ids[0])
        for a, b in itertools.pairwise(ids):
            graph.add_edge(a, b)
        graph.add_edge(ids[-1], END)
    else:
        middle = [f"m{i}" for i in range(n - 2)]
        for i in ["s", *middle, "join"]:
            graph.add_node(i, noop)
        graph.add_edge(START, "s")
        for m in middle:
            graph.add_edge("s", m)
        graph.add_edge(middle, "join")
        graph.add_edge("join", END)
    return graph.compile()


async def langgraph_per_element_ms(shape: str, n: int, rounds: int) -> float | None:
    try:
        compiled = langgraph_graph(shape, n)
    except ImportError:
        return None
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await compiled.ainvoke({"x": 1})
        samples.append((time.perf_counter() - t0) / n * 1000)
    return statistics.median(samples)


def validation_ms(n: int) -> float:
    body = json.dumps(chain(n))
    validate_request(body, SETTINGS, BENCH_REGISTRY)
    samples = []
    for _ in range(20):
        t0 = time.perf_counter()
        validate_request(body, SETTINGS, BENCH_REGISTRY)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


async def main() -> None:
    for shape, n, body in (("chain10", 10, chain(10)), ("fan50", 50, fan(50))):
        await engine_per_element_ms(body, n, 20)  # warm up
        ours = await engine_per_element_ms(body, n, 200)
        theirs = await langgraph_per_element_ms("chain" if shape.startswith("chain") else "fan", n, 200)
        print(f"engine_{shape}_per_element: {ours:.4f} ms")
        if theirs is not None:
            print(f"langgraph_{shape}_per_element: {theirs:.4f} ms")
            print(f"engine_vs_langgraph_{shape}: {ours / theirs:.3f} x")
    print(f"validate_1000_elements: {validation_ms(1000):.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
