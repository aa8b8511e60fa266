"""JSON Schemas of the service's two wire contracts, built from the code at call time: the body
of `POST /execute` and the event messages sent to Backend 2, plus an AsyncAPI 3.0 document of
that WebSocket channel. No field is listed here by hand but the degraded event shapes below.

Contract:
- `flow_schema(registry)`: JSON Schema (draft 2020-12) of the `/execute` body, from the pydantic
  models of `engine.models`. An element (a value of `flow_definition.elements`, and of the
  `elements` of every inline sub-flow: the same `$defs/ElementDefinition`, by `$ref`, so
  recursion is allowed) is a `oneOf` with one branch per type of `registry`, told apart by its
  `type` `const`. A branch holds the common fields of `ElementDefinition` plus the fields of the
  class's `Config` model, at the top level and again in a `config` object (all optional there);
  a field of `Config` named like a common field can only be in `config` (the top-level key is
  the common field). A new element class appears by itself.
  - Required settings: the service takes a setting from either place (the nested one wins), so
    each required `Config` field is one `anyOf` of "at the top level" or "in `config`", in the
    branch's `allOf`: exact for required-ness, and the field's type is still checked wherever
    it is given. Marking the fields required at the top level would refuse valid flows, and
    leaving them optional would accept flows the service refuses.
  - Unknown keys: as the service does. `Config` models with `extra="forbid"` refuse unknown
    keys at the top level and in `config` (`additionalProperties: false`); `ignore` / `allow`
    ones accept them. Keys outside `ElementDefinition`'s fields are settings to the service, so
    a key such as `position` is refused by the types whose `Config` forbids extras, as there.
  - Stricter in one corner: a top-level setting that `config` overrides must still have its
    type (the service would drop it unread).
  - What it does not say: checks made by code rather than types — id characters, the graph
    (connections, start, cycles, ports), cross-field rules of a `Config` (`operation: view`
    needs `function`), the Backend 2 URL policy. Those stay the service's (422 with paths).
    It shows the canonical JSON types; pydantic's lax mode also takes some coercible values
    (`"0.5"` for a number), which the schema does not advertise.
- `events_schema(registry=None)`: JSON Schema (2020-12) of one message: a `oneOf` with one
  branch per event type (`engine.contracts.EVENT_DATA`) — the envelope of `EventMessage`,
  `type` as a `const`, `seq` as bounded by `engine.models.Event`, and `data` that type's
  TypedDict — and two branches for the degraded forms the service really sends. With a
  registry, `element_started.data.type` is one of its types. Loosened where the service
  rewrites events, and only there:
  - `engine.event_log.fit_event` replaces values of an event over `MAX_EVENT_BYTES` by a
    `TruncatedValue` marker: any property of `data` may be one (the values inside
    `data.outputs` / `data.inputs` are free-form already);
  - an event whose envelope alone is too large, or that cannot be encoded there, keeps only
    its envelope, without `scope`, and `data` = `{"truncated": true, "error":
    {"error_type": "event_too_large", …}}` (`EventTooLarge`);
  - an event the coordinator's outbox cannot encode is sent as a stub with `element_id` always
    present (`null` when the event had none), no `scope`, and `data` = `{"error": {"error_type":
    "serialization_failed", …}, "status"?}` (`SerializationFailed`).
  The two degraded data shapes are closed (`additionalProperties: false`), so every message
  matches exactly one branch. The tests check these shapes against the functions that make them.
- `asyncapi_document(registry, version)`: AsyncAPI 3.0: this service (the application) sends
  on one channel of Backend 2's WebSocket server (the `backend2_ws_url` of each flow), one
  JSON text message per event; one message per event type and per degraded form, each payload
  the same schema as in `events_schema(registry)` (under `components/schemas`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import quote

from pydantic import ConfigDict, TypeAdapter, with_config
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaWarningKind

from engine.contracts import EVENT_DATA, EventMessage
from engine.element import AnyElement
from engine.models import ElementDefinition, Event, ExecuteRequest
from engine.registry import ElementRegistry

Schema = dict[str, Any]

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DEFS = "#/$defs/"
_ELEMENT_UNION = "ElementDefinition"  # the def every `elements` map refers to; becomes the union


class _Generator(GenerateJsonSchema):
    """Pydantic's generator without the warning for defaults that have no JSON form (a
    sentinel such as `selector`'s "no default"): such a default is left out, as it should be."""

    ignored_warning_kinds: set[JsonSchemaWarningKind] = {"skipped-choice", "non-serializable-default"}


# -- the degraded event shapes (see the module docstring) ----------------------------------------


class TruncatedValue(TypedDict):
    """A value too large for its event, replaced by `engine.event_log.fit_event`: its encoded
    JSON's size and SHA-256, and its first characters; the element's checkpoint keeps it whole
    (`GET /flows/{id}/elements/{element_id}`)."""

    truncated: Literal[True]
    bytes: int
    sha256: str
    preview: str


@with_config(ConfigDict(extra="forbid"))
class TooLargeError(TypedDict):
    error_type: Literal["event_too_large"]
    message: str


@with_config(ConfigDict(extra="forbid"))
class EventTooLargeData(TypedDict):
    """`data` of an event sent as its envelope alone (`engine.event_log.fit_event`): the event
    was too large even with its values replaced, or could not be encoded."""

    truncated: Literal[True]
    error: TooLargeError


@with_config(ConfigDict(extra="forbid"))
class SerializationError(TypedDict):
    error_type: Literal["serialization_failed"]
    message: str


@with_config(ConfigDict(extra="forbid"))
class SerializationFailedData(TypedDict):
    """`data` of the stub that replaces an event the coordinator's outbox could not encode; a
    `flow_completed` keeps its `status`."""

    error: SerializationError
    status: NotRequired[str]


class EventTooLarge(TypedDict):
    """An event of any type sent as its envelope alone (no `scope`)."""

    type: str
    flow_id: str
    seq: int
    timestamp: str
    element_id: NotRequired[str]
    data: EventTooLargeData


class SerializationFailed(TypedDict):
    """The stub sent instead of an event of any type that could not be encoded (no `scope`;
    `element_id` always present, `null` when the event had none)."""

    type: str
    flow_id: str
    seq: int
    timestamp: str
    element_id: str | None
    data: SerializationFailedData


_DEGRADED: dict[str, type[Any]] = {"event_too_large": EventTooLarge, "serialization_failed": SerializationFailed}


# -- helpers ----------------------------------------------------------------------------------


def _generate(types: dict[str, Any]) -> tuple[dict[str, Schema], dict[str, Schema]]:
    """The JSON schema of each of `types` (by name) and their shared `$defs`."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (name, "validation", TypeAdapter(value)) for name, value in types.items()
    ]
    schemas, definitions = TypeAdapter.json_schemas(inputs, ref_template=_DEFS + "{model}", schema_generator=_Generator)
    return {name: schemas[(name, "validation")] for name in types}, definitions.get("$defs", {})


def def_ref(name: str) -> str:
    """The `$ref` of `$defs/<name>` (JSON-pointer escaped, then URI-fragment encoded)."""
    return _DEFS + quote(name.replace("~", "~0").replace("/", "~1"), safe="")


def _def_name(schema: Schema) -> str:
    """The def name a pydantic schema refers to (pydantic's names need no escaping)."""
    ref: str = schema["$ref"]
    return ref.removeprefix(_DEFS)


def _refs(value: Any) -> Iterator[str]:
    """Every `$ref` in a JSON value, iteratively."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str):
                yield ref
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _keep_used(root: Schema, definitions: dict[str, Schema]) -> dict[str, Schema]:
    """The defs reachable from `root` (its other keys), in their order; a `$ref` to a def that
    does not exist is a bug here, raised at once rather than served."""
    by_ref = {def_ref(name): name for name in definitions}
    used: set[str] = set()
    pending = list(_refs(root))
    while pending:
        ref = pending.pop()
        if ref not in by_ref:
            raise RuntimeError(f"schema bug: {ref} refers to no definition")
        name = by_ref[ref]
        if name not in used:
            used.add(name)
            pending.extend(_refs(definitions[name]))
    return {name: schema for name, schema in definitions.items() if name in used}


def _document(title: str, description: str, body: Schema, definitions: dict[str, Schema]) -> Schema:
    document: Schema = {"$schema": DIALECT, "title": title, "description": description, **body}
    document["$defs"] = _keep_used(document, definitions)
    return document


def _doc(cls: type[Any]) -> str | None:
    """The class's own docstring (never an inherited one), dedented to one paragraph per line."""
    text = cls.__dict__.get("__doc__")
    if not isinstance(text, str) or not text.strip():
        return None
    paragraphs = [" ".join(line.strip() for line in block.splitlines()) for block in text.strip().split("\n\n")]
    return "\n\n".join(paragraphs)


# -- POST /execute ------------------------------------------------------------------------------


def _element_types(registry: ElementRegistry) -> list[type[AnyElement]]:
    types = []
    for name in registry.known_types():
        cls = registry.get(name)
        if cls is not None:
            types.append(cls)
    return types


def _required_somewhere(field: str, nested_only: bool) -> Schema:
    in_config: Schema = {"required": ["config"], "properties": {"config": {"required": [field]}}}
    if nested_only:
        return {"description": f"`{field}` is required, in `config`", **in_config}
    return {
        "description": f"`{field}` is required: at the top level of the element or in its `config`",
        "anyOf": [{"required": [field]}, in_config],
    }


def _element_branch(cls: type[AnyElement], common: Schema, config: Schema) -> Schema:
    """The branch of one element type: common fields + its settings, at the top and in `config`."""
    forbids = cls.Config.model_config.get("extra") == "forbid"
    common_fields = common.get("properties", {})
    settings: dict[str, Schema] = config.get("properties", {})
    properties: dict[str, Schema] = {"type": {"const": cls.type_name}}
    properties |= {name: field for name, field in common_fields.items() if name not in ("type", "config")}
    properties |= {name: field for name, field in settings.items() if name not in common_fields}
    nested: Schema = {
        "type": "object",
        "description": "Settings of this type, as at the top level of the element, all optional here; "
        "a setting given in both places takes this value.",
        "properties": settings,
    }
    if forbids:
        nested["additionalProperties"] = False
    properties["config"] = nested
    branch: Schema = {"type": "object", "title": cls.type_name}
    description = _doc(cls) or _doc(cls.Config)
    if description:
        branch["description"] = description
    branch |= {"properties": properties, "required": list(common.get("required", ["type"]))}
    if forbids:
        branch["additionalProperties"] = False
    required = [_required_somewhere(name, name in common_fields) for name in config.get("required", [])]
    if required:
        branch["allOf"] = required
    return branch


def flow_schema(registry: ElementRegistry) -> Schema:
    """JSON Schema (2020-12) of the `POST /execute` body with the element types of `registry`."""
    types = _element_types(registry)
    inputs: dict[str, Any] = {"request": ExecuteRequest, "element": ElementDefinition}
    inputs |= {f"config {cls.type_name}": cls.Config for cls in types}
    schemas, definitions = _generate(inputs)
    element_def = _def_name(schemas["element"])
    if element_def != _ELEMENT_UNION:
        raise RuntimeError(f"schema bug: ElementDefinition is named {element_def!r} in $defs")
    common = definitions[element_def]
    branches: list[Schema] = []
    for cls in types:
        config = definitions[_def_name(schemas[f"config {cls.type_name}"])]
        name = f"element.{cls.type_name}"
        definitions[name] = _element_branch(cls, common, config)
        branches.append({"$ref": def_ref(name)})
    definitions[_ELEMENT_UNION] = {
        "title": "Element",
        "description": (
            common.get("description", "") + " One branch per element type, told apart by `type`. "
            "Settings of a type may be given at the top level of the element or in its `config` object "
            "(the nested one wins); a required setting may be in either place."
        ).strip(),
        "oneOf": branches,
    }
    return _document(
        "POST /execute body",
        "A flow to run (or to check with POST /validate). Built from the service's models and element "
        "types; semantic checks (ids, the graph, cross-field rules, the Backend 2 URL) are the service's.",
        {"$ref": _DEFS + _def_name(schemas["request"])},
        definitions,
    )


# -- events to Backend 2 ----------------------------------------------------------------------


def _is_free_object(schema: Schema) -> bool:
    """An object with no declared keys: takes a `TruncatedValue` already."""
    return (
        schema.get("type") == "object"
        and "properties" not in schema
        and "required" not in schema
        and schema.get("additionalProperties", True) is True
    )


def _or_marker(schema: Schema, marker: Schema) -> Schema:
    """`schema`, or a `TruncatedValue` in its place (its title and description kept outside)."""
    if _is_free_object(schema):
        return schema
    notes: Schema = {key: schema[key] for key in ("title", "description") if key in schema}
    rest = {key: value for key, value in schema.items() if key not in notes}
    options = rest["anyOf"] if list(rest) == ["anyOf"] else [rest]
    return {**notes, "anyOf": [*options, marker]}


def _event_schemas(registry: ElementRegistry | None) -> tuple[list[tuple[str, str]], dict[str, Schema]]:
    """`(message name, def name)` of every event branch, and the defs."""
    inputs: dict[str, Any] = {"envelope": EventMessage, "event": Event, "marker": TruncatedValue}
    inputs |= {f"data {event_type}": data for event_type, data in EVENT_DATA.items()}
    inputs |= {f"degraded {name}": shape for name, shape in _DEGRADED.items()}
    schemas, definitions = _generate(inputs)
    envelope = definitions[_def_name(schemas["envelope"])]
    seq = definitions[_def_name(schemas["event"])]["properties"]["seq"]
    marker = {"$ref": _DEFS + _def_name(schemas["marker"])}
    event_types = list(EVENT_DATA)
    branches: list[tuple[str, str]] = []
    for event_type in event_types:
        data = definitions[_def_name(schemas[f"data {event_type}"])]
        fields = dict(data.get("properties", {}))
        if event_type == "element_started" and registry is not None and "type" in fields:
            fields["type"] = {**fields["type"], "enum": registry.known_types()}
        data["properties"] = {name: _or_marker(field, marker) for name, field in fields.items()}
        properties = dict(envelope["properties"])
        properties["type"] = {"const": event_type}
        properties["seq"] = seq
        properties["data"] = {"$ref": _DEFS + _def_name(schemas[f"data {event_type}"])}
        name = f"event.{event_type}"
        definitions[name] = {**copy.deepcopy(envelope), "title": event_type, "properties": properties}
        definitions[name].pop("description", None)
        branches.append((event_type, name))
    for degraded in _DEGRADED:
        shape = definitions[_def_name(schemas[f"degraded {degraded}"])]
        shape["properties"] = {**shape["properties"], "type": {"enum": event_types}, "seq": seq}
        branches.append((degraded, _def_name(schemas[f"degraded {degraded}"])))
    return branches, definitions


def events_schema(registry: ElementRegistry | None = None) -> Schema:
    """JSON Schema (2020-12) of one event message sent to Backend 2 (see the module docstring)."""
    branches, definitions = _event_schemas(registry)
    return _document(
        "Event message to Backend 2",
        "One JSON text message per event: `seq` contiguous from 1 per flow (dedupe by it), "
        "`flow_started` first and `flow_completed` last; `scope` on events of elements inside sub-flows, "
        "outermost first. A value of `data` may be a `TruncatedValue` when the event was too large; "
        "`EventTooLarge` and `SerializationFailed` replace an event that could not be sent whole.",
        {"oneOf": [{"$ref": def_ref(name)} for _message, name in branches]},
        definitions,
    )


# -- AsyncAPI -----------------------------------------------------------------------------------


def _components(value: Any) -> Any:
    """`value` with `#/$defs/` refs pointing at `#/components/schemas/`, and each `$ref` that
    has sibling keywords wrapped in an `allOf` (AsyncAPI schemas follow draft 07, where a
    `$ref`'s siblings are ignored)."""
    if isinstance(value, list):
        return [_components(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _components(item) for key, item in value.items()}
    ref = converted.get("$ref")
    if isinstance(ref, str):
        converted["$ref"] = "#/components/schemas/" + ref.removeprefix(_DEFS)
        if len(converted) > 1:
            converted["allOf"] = [{"$ref": converted.pop("$ref")}]
    return converted


def asyncapi_document(registry: ElementRegistry, version: str = "0.1.0") -> Schema:
    """AsyncAPI 3.0 of the events this service sends to Backend 2 (`version`: the service's)."""
    branches, definitions = _event_schemas(registry)
    used = _keep_used({"oneOf": [{"$ref": def_ref(name)} for _message, name in branches]}, definitions)
    messages: Schema = {}
    for message, name in branches:
        entry: Schema = {"name": message, "title": message, "contentType": "application/json"}
        summary = definitions[name].get("description")
        if summary:
            entry["summary"] = summary
        entry["payload"] = {"$ref": f"#/components/schemas/{quote(name, safe='')}"}
        messages[message] = entry
    channel_messages = {message: {"$ref": f"#/components/messages/{message}"} for message, _name in branches}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Flow Executor → Backend 2 events",
            "version": version,
            "description": (
                "Every step of every flow, streamed to Backend 2. Backend 2 hosts the WebSocket server; "
                "this service connects to the `backend2_ws_url` of each `POST /execute` and sends one JSON "
                "text message per event, in `seq` order (contiguous from 1 per flow; after a reconnection a "
                "few may come again: dedupe by `seq`). `flow_started` is first and `flow_completed` last; "
                "events of elements inside sub-flows carry `scope`. A value of `data` may be a "
                "`TruncatedValue` marker when the event was too large (the full value stays readable from "
                "the service); `event_too_large` and `serialization_failed` replace an event that could "
                "not be sent whole."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "backend2": {
                "host": "{host}",
                "protocol": "ws",
                "description": "Backend 2's WebSocket server: the host (and port) of `backend2_ws_url`; "
                "`wss://` URLs use TLS.",
                "variables": {"host": {"description": "host[:port] of the flow's `backend2_ws_url`"}},
            }
        },
        "channels": {
            "flowEvents": {
                "address": "{path}",
                "title": "A flow's events",
                "description": "The path (and query) of the flow's `backend2_ws_url`: one connection per flow.",
                "parameters": {"path": {"description": "path and query of the flow's `backend2_ws_url`"}},
                "servers": [{"$ref": "#/servers/backend2"}],
                "messages": channel_messages,
            }
        },
        "operations": {
            "sendFlowEvents": {
                "action": "send",
                "title": "Send a flow's events",
                "channel": {"$ref": "#/channels/flowEvents"},
                "messages": [{"$ref": f"#/channels/flowEvents/messages/{message}"} for message, _name in branches],
            }
        },
        "components": {"messages": messages, "schemas": _components(used)},
    }
