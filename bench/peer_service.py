"""The peer of `bench_peer`: what a user who does not need Ray would write instead — one uvicorn
process, FastAPI, the flow run by LangGraph, every event sent over one WebSocket per flow.

It does the same job as the service for the flows the benchmark posts (start → data_block… →
end): parses and checks the request body (pydantic), builds the flow's LangGraph graph (a node
per element, an edge per connection; compiled once per distinct definition and reused, as a
careful hand-written service would), answers `{"status": "started"}` before running it, and
sends `flow_started`, `element_started` / `element_completed` per element and `flow_completed`,
each with `seq`, `timestamp`, `flow_id`, over a WebSocket it opens to `backend2_ws_url`. No
persistence, no retries, no auth, no limits: the smallest honest version of the job.
`python -m bench.peer_service <port>` serves it on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypedDict

import uvicorn
import websockets
from fastapi import FastAPI
from pydantic import BaseModel, Field

if TYPE_CHECKING:  # langgraph is a benchmark requirement (requirements-bench.txt), imported when a graph is built
    from langchain_core.runnables import RunnableConfig

app = FastAPI()
_running: set[asyncio.Task[None]] = set()
_compiled: dict[str, Any] = {}


class Element(BaseModel, extra="allow"):
    type: str
    element_id: str


class Connection(BaseModel, extra="allow"):
    from_id: str
    to_id: str


class Definition(BaseModel):
    flow_id: str
    elements: dict[str, Element]
    connections: list[Connection] = Field(default_factory=list)
    start_element_id: str


class ExecuteBody(BaseModel):
    flow_id: str
    flow_definition: Definition
    initial_inputs: dict[str, Any] = Field(default_factory=dict)
    backend2_ws_url: str
    config: dict[str, Any] = Field(default_factory=dict)


class State(TypedDict, total=False):
    values: dict[str, Any]


Send = Callable[[str, str | None, dict[str, Any]], Awaitable[None]]


def _node(element: Element) -> Callable[[State, RunnableConfig], Awaitable[State]]:
    async def run(state: State, config: RunnableConfig) -> State:
        send: Send = config["configurable"]["send"]
        inputs = state.get("values", {})
        await send("element_started", element.element_id, {"type": element.type, "inputs": inputs})
        extra = element.model_extra or {}  # a dict: the model allows extra fields
        outputs = dict(extra.get("data", {})) if element.type == "data_block" else dict(inputs)
        await send("element_completed", element.element_id, {"outputs": outputs})
        return {"values": outputs}

    return run


def _graph(definition: Definition) -> Any:
    """The flow's compiled graph, built once per distinct definition (the flow id aside)."""
    key = definition.model_dump_json(exclude={"flow_id"})
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compiled[key] = _compile(definition)
    return compiled


def _compile(definition: Definition) -> Any:
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    for element_id, element in definition.elements.items():
        graph.add_node(element_id, _node(element))
    graph.add_edge(START, definition.start_element_id)
    sources = {c.from_id for c in definition.connections}
    for connection in definition.connections:
        graph.add_edge(connection.from_id, connection.to_id)
    for element_id in definition.elements.keys() - sources:
        graph.add_edge(element_id, END)
    return graph.compile()


async def _run(body: ExecuteBody) -> None:
    async with websockets.connect(body.backend2_ws_url) as socket:
        seq = 0

        async def send(type_: str, element_id: str | None, data: dict[str, Any]) -> None:
            nonlocal seq
            seq += 1
            timestamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            event = {"type": type_, "flow_id": body.flow_id, "seq": seq, "timestamp": timestamp, "data": data}
            if element_id is not None:
                event["element_id"] = element_id
            await socket.send(json.dumps(event))

        await send("flow_started", None, {"start_element_id": body.flow_definition.start_element_id})
        config: RunnableConfig = {"configurable": {"send": send}}
        final = await _graph(body.flow_definition).ainvoke({"values": body.initial_inputs}, config)
        await send("flow_completed", None, {"status": "completed", "outputs": final.get("values", {})})


@app.post("/execute")
async def execute(body: ExecuteBody) -> dict[str, str]:
    task = asyncio.create_task(_run(body))
    _running.add(task)
    task.add_done_callback(_running.discard)
    return {"status": "started", "flow_id": body.flow_id}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy"}


if __name__ == "__main__":
    if importlib.util.find_spec("langgraph") is None:  # else every flow fails and its client waits for ever
        sys.exit("bench/peer_service.py runs flows with LangGraph: pip install -r requirements-bench.txt")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
