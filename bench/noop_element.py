"""A no-op element for measuring engine overhead (the equivalent of LangGraph's no-op node), and
the registry of the built-in types plus it."""

from typing import Any

from engine.element import ElementBase, ElementContext, NoConfig
from engine.registry import ElementRegistry
from runtime.catalog import builtin_registry


class NoopElement(ElementBase[NoConfig]):
    type_name = "bench_noop"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        return inputs


BENCH_REGISTRY: ElementRegistry = builtin_registry().with_types(NoopElement)
