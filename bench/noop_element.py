"""A no-op element for measuring engine overhead (the equivalent of LangGraph's no-op node)."""

from elements.base import ElementBase
from elements.registry import get, register


class NoopElement(ElementBase):
    type_name = "bench_noop"

    async def execute(self, inputs, ctx):
        return inputs


if get(NoopElement.type_name) is None:
    register(NoopElement)
