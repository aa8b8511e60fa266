"""`start` and `end`: where a flow's data comes in and goes out.

`start` outputs its inputs — the scheduler gives the start element the request's
`initial_inputs`. `end` outputs its inputs as the flow's outputs, renamed to its
`output_schema` names where those differ from its `input_schema` names, position by position
in declared order (the seed's `text_input` → `text_output`); a name declared in both keeps its
name, and with no `output_schema` the inputs pass as they are.
"""

from __future__ import annotations

from typing import Any

from engine.element import ElementBase, ElementContext, NoConfig


class StartElement(ElementBase[NoConfig]):
    type_name = "start"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        return dict(inputs)


class EndElement(ElementBase[NoConfig]):
    type_name = "end"
    is_output = True

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        in_names = list(self.definition.input_schema) or list(inputs)
        return rename_outputs(inputs, in_names, list(self.definition.output_schema))


def rename_outputs(inputs: dict[str, Any], in_names: list[str], out_names: list[str]) -> dict[str, Any]:
    if not out_names:
        return dict(inputs)
    outputs: dict[str, Any] = {}
    unclaimed = [name for name in out_names if name not in in_names]
    for position, name in enumerate(in_names):
        if name not in inputs:
            continue
        if name in out_names:
            outputs[name] = inputs[name]
        elif position < len(out_names) and out_names[position] in unclaimed:
            outputs[out_names[position]] = inputs[name]
        else:
            outputs[name] = inputs[name]
    for name, value in inputs.items():
        if name not in in_names:
            outputs.setdefault(name, value)
    return outputs
