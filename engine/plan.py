"""A validated flow, ready to schedule: element instances and the connection index.

Contract: a `FlowPlan` is only built from a definition that passed validation, so every
connection names existing elements and every element has a registered type and valid config,
every id is a valid `engine.models.Id`, the counts are within `MAX_FLOW_ELEMENTS` /
`MAX_FLOW_CONNECTIONS` and no configured value is nested deeper than `MAX_VALUE_DEPTH`.
It is immutable during a run and shared by nothing but that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from elements.base import ElementBase
from engine.models import Connection, FlowDefinition


@dataclass
class FlowPlan:
    definition: FlowDefinition
    elements: dict[str, ElementBase]
    incoming: dict[str, list[int]] = field(default_factory=dict)
    outgoing: dict[str, list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, definition: FlowDefinition, elements: dict[str, ElementBase]) -> FlowPlan:
        incoming: dict[str, list[int]] = {eid: [] for eid in elements}
        outgoing: dict[str, list[int]] = {eid: [] for eid in elements}
        for index, conn in enumerate(definition.connections):
            outgoing[conn.from_id].append(index)
            incoming[conn.to_id].append(index)
        return cls(definition, elements, incoming, outgoing)

    @property
    def flow_id(self) -> str:
        return self.definition.flow_id

    @property
    def start_id(self) -> str:
        return self.definition.start_element_id

    def connection(self, index: int) -> Connection:
        return self.definition.connections[index]

    def end_ids(self) -> list[str]:
        return [eid for eid, element in self.elements.items() if element.type_name == "end"]
