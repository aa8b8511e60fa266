"""A validated flow, ready to schedule: element instances, the connection index and graph facts.

Contract: a `FlowPlan` is only built from a definition that passed validation, so every
connection names existing elements and every element has a registered type and valid config,
every id is a valid `engine.models.Id`, the counts are within `MAX_FLOW_ELEMENTS` /
`MAX_FLOW_CONNECTIONS` and no configured value is nested deeper than `MAX_VALUE_DEPTH`.
Sub-flows (`ElementBase.inner_flow`) are validated the same way and planned with the flow:
`sub_plans` maps each element that runs one to its plan (which has its own `sub_plans`).
`build` computes once what the scheduler asks of the graph: the connections into and out of
each element and the elements reachable from the start. It is immutable during a run and shared by nothing but that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.element import ERROR_PORT, AnyElement
from engine.graph import adjacency, reachable
from engine.models import Connection, FlowGraph


@dataclass(frozen=True)
class FlowPlan:
    flow_id: str
    definition: FlowGraph
    elements: dict[str, AnyElement]
    incoming: dict[str, list[int]] = field(default_factory=dict)
    outgoing: dict[str, list[int]] = field(default_factory=dict)
    reachable: frozenset[str] = frozenset()
    sub_plans: dict[str, FlowPlan] = field(default_factory=dict)  # element id → the plan of its inline sub-flow

    @classmethod
    def build(
        cls,
        flow_id: str,
        definition: FlowGraph,
        elements: dict[str, AnyElement],
        sub_plans: dict[str, FlowPlan] | None = None,
    ) -> FlowPlan:
        incoming: dict[str, list[int]] = {eid: [] for eid in elements}
        outgoing: dict[str, list[int]] = {eid: [] for eid in elements}
        for index, conn in enumerate(definition.connections):
            outgoing[conn.from_id].append(index)
            incoming[conn.to_id].append(index)
        from_start = frozenset(reachable(adjacency(definition), definition.start_element_id))
        return cls(flow_id, definition, elements, incoming, outgoing, from_start, sub_plans or {})

    @property
    def start_id(self) -> str:
        return self.definition.start_element_id

    def connection(self, index: int) -> Connection:
        return self.definition.connections[index]

    def failure_fails_flow(self, element_id: str) -> bool:
        """Whether a failure of the element fails the flow: `on_error: "fail"` (the default) and
        no connection from its error port."""
        error_port = any(self.connection(i).from_output == ERROR_PORT for i in self.outgoing[element_id])
        return self.elements[element_id].definition.on_error == "fail" and not error_port
