"""Building one element and its context for element-level tests."""

from __future__ import annotations

from typing import Any

from engine.element import AnyElement, ElementContext
from engine.models import ElementDefinition
from engine.settings import Settings
from runtime.catalog import builtin_registry
from services.hub import ServiceHub


def make_element(type_: str, **fields: Any) -> AnyElement:
    definition = ElementDefinition.model_validate({"type": type_, "element_id": f"{type_}-1", **fields})
    cls = builtin_registry().get(type_)
    assert cls is not None, type_
    return cls.from_definition(definition)


def make_ctx(settings: Settings | None = None, chunks: list | None = None) -> ElementContext:
    settings = settings or Settings(_env_file=None)
    sink = chunks.append if chunks is not None else (lambda item: None)
    return ElementContext(
        flow_id="f",
        element_id="e",
        settings=settings,
        services=ServiceHub(settings),
        emit_chunk_event=lambda chunk, index: sink((chunk, index)),
    )


async def run_element(type_: str, inputs: dict[str, Any], **fields: Any):
    return await make_element(type_, **fields).execute(inputs, make_ctx())
