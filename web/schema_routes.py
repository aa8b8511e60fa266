"""`GET /schemas/flow` and `GET /schemas/events`: the JSON Schemas of the `POST /execute` body
and of the event messages sent to Backend 2 (`web.json_schemas`), for the built-in element types.

Contract: `router` is a FastAPI `APIRouter` for the app to include. Each document is built once
per process, on its first request, and its JSON text kept; every answer is that text
(`application/json`). The routes sit behind the app's bearer auth like every route but `/health`.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from runtime.catalog import builtin_registry
from web.json_schemas import events_schema, flow_schema

router = APIRouter(tags=["schemas"])

_JSON_SCHEMA: dict[int | str, dict[str, Any]] = {200: {"content": {"application/json": {"schema": {"type": "object"}}}}}


@functools.cache
def flow_schema_text() -> bytes:
    """The JSON of `flow_schema(builtin_registry())`, built once."""
    return json.dumps(flow_schema(builtin_registry()), ensure_ascii=False).encode()


@functools.cache
def events_schema_text() -> bytes:
    """The JSON of `events_schema(builtin_registry())`, built once."""
    return json.dumps(events_schema(builtin_registry()), ensure_ascii=False).encode()


@router.get("/schemas/flow", response_class=Response, responses=_JSON_SCHEMA)
async def flow_body_schema() -> Response:
    """JSON Schema (2020-12) of the `POST /execute` body: one branch per element type, each with
    its type-specific settings, inline sub-flows included."""
    return Response(flow_schema_text(), media_type="application/json")


@router.get("/schemas/events", response_class=Response, responses=_JSON_SCHEMA)
async def event_message_schema() -> Response:
    """JSON Schema (2020-12) of one event message sent to Backend 2 (a `oneOf` over event types)."""
    return Response(events_schema_text(), media_type="application/json")
