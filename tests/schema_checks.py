"""The service's published JSON Schemas (`web.json_schemas`) as validators, for tests.

`flow_problems(body, registry)` / `event_problems(message, registry)` say why a value does not
match the flow schema / the events schema (empty: it matches); the registry defaults to the
built-in element types, the ones the service runs. Validators are built once per registry.

- A problem is `<JSON path>: <reason>`, the reason taken from the branch of a `oneOf` whose
  `type` matched (else jsonschema's `best_match`), cut to `MAX_PROBLEM_CHARS` characters:
  jsonschema's messages quote the value, which may be large.
- `event_problems` first tries the message against the branch of its own `type` alone (about
  a tenth of the cost of the whole `oneOf`: the fake Backend 2 checks every event of every
  test); the branches exclude each other (tests/project/test_schemas.py checks it), so a
  message valid there is valid under the schema. Anything else goes through the whole schema;
  when it fails there, the problems named are those under the branch of its `type` (if known).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.registry import ElementRegistry
from runtime.catalog import builtin_registry
from web.json_schemas import def_ref, events_schema, flow_schema

MAX_PROBLEM_CHARS = 500


@functools.cache
def flow_validator(registry: ElementRegistry | None = None) -> Draft202012Validator:
    return Draft202012Validator(flow_schema(registry or builtin_registry()))


@functools.cache
def events_validator(registry: ElementRegistry | None = None) -> Draft202012Validator:
    return Draft202012Validator(events_schema(registry or builtin_registry()))


@functools.cache
def event_branch_validators(registry: ElementRegistry | None = None) -> dict[str, Draft202012Validator]:
    """By event type: a validator of that type's branch (`$defs/event.<type>`) alone."""
    definitions = events_schema(registry or builtin_registry())["$defs"]
    branches = [name for name in definitions if name.startswith("event.")]
    return {
        name.removeprefix("event."): Draft202012Validator({"$ref": def_ref(name), "$defs": definitions})
        for name in branches
    }


def _matching_branch(error: ValidationError) -> list[ValidationError] | None:
    """The errors of the one `oneOf` / `anyOf` branch whose `type` const held, if exactly one did."""
    by_branch: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context or []:
        by_branch[sub.relative_schema_path[0]].append(sub)
    held = [
        errors
        for errors in by_branch.values()
        if not any(e.validator == "const" and list(e.relative_path) == ["type"] for e in errors)
    ]
    return held[0] if len(held) == 1 else None


def _reason(error: ValidationError) -> ValidationError:
    while error.validator in ("oneOf", "anyOf") and error.context:
        branch = _matching_branch(error)
        if branch is None:
            return best_match([error])
        error = best_match(branch)
    return error


def problems(validator: Draft202012Validator, value: Any) -> list[str]:
    """One line per top-level error: `<JSON path>: <reason>`."""
    found = []
    for error in validator.iter_errors(value):
        reason = _reason(error)
        found.append(f"{reason.json_path}: {reason.message}"[:MAX_PROBLEM_CHARS])
    return found


def flow_problems(body: Any, registry: ElementRegistry | None = None) -> list[str]:
    return problems(flow_validator(registry), body)


def event_problems(message: Any, registry: ElementRegistry | None = None) -> list[str]:
    event_type = message.get("type") if isinstance(message, dict) else None
    branch = event_branch_validators(registry).get(event_type) if isinstance(event_type, str) else None
    if branch is not None and branch.is_valid(message):
        return []
    if events_validator(registry).is_valid(message):  # a degraded form
        return []
    return problems(branch or events_validator(registry), message)
