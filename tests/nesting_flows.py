"""Builders of flows with sub-flows, shared by the engine, element and end-to-end tests."""

from __future__ import annotations

from typing import Any

from tests.engine_doubles import flow


def sub(elements: dict[str, dict], connections: list[tuple], start: str = "s") -> dict[str, Any]:
    """An inline sub-flow (`flow` of iteration / loop / sub_flow): like `flow`, without a flow id."""
    definition = flow(elements, connections, start=start)["flow_definition"]
    del definition["flow_id"]
    return definition


def chain(*middle: tuple[str, dict]) -> dict[str, Any]:
    """A sub-flow start → each of `middle` in turn → end."""
    elements = {"s": {"type": "start"}, **dict(middle), "end": {"type": "end"}}
    ids = list(elements)
    return sub(elements, list(zip(ids, ids[1:], strict=False)))


def around(element: dict, inputs: dict | None = None, flow_id: str = "f-1", **execute: Any) -> dict[str, Any]:
    """A flow start → `element` (id `n`) → end."""
    return flow(
        {"s": {"type": "start"}, "n": element, "e": {"type": "end"}},
        [("s", "n"), ("n", "e")],
        inputs=inputs,
        flow_id=flow_id,
        **execute,
    )
