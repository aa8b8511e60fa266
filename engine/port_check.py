"""Checks of values against an element's declared ports (`input_schema` / `output_schema`).

Contract: `check_ports(values, schema)` returns one plain message per problem — a required
field that is missing, or a value whose JSON type differs from the declared `type` — each
naming the field. Undeclared fields pass; `any` accepts everything; booleans are not numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models import PortSpec

_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
}


def json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    for name in ("integer", "number", "string", "object", "array"):
        if isinstance(value, _PY_TYPES[name]):
            return name
    return type(value).__name__


def matches(value: Any, declared: str) -> bool:
    if declared == "any":
        return True
    if isinstance(value, bool) and declared != "boolean":
        return False
    return isinstance(value, _PY_TYPES[declared])


def check_ports(values: Mapping[str, Any], schema: Mapping[str, PortSpec]) -> list[str]:
    problems = []
    for name, spec in schema.items():
        if name not in values or values[name] is None:
            if spec.required:
                problems.append(f"'{name}' is required but was not provided")
            continue
        if not matches(values[name], spec.type):
            problems.append(f"'{name}' must be {spec.type}, got {json_type_name(values[name])}")
    return problems
