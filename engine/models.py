"""Pydantic models at the boundary: the `/execute` request, flow definitions and the event envelope.

Contract:
- `ExecuteRequest` is the body of `POST /execute` exactly as in the seed brief; unknown keys
  in `config` and in element definitions are kept (element type-specific config lives there).
- `ElementDefinition.settings()` returns the type-specific configuration of an element: its
  extra top-level keys merged with an optional nested `config` object (nested wins).
- `Event` is the envelope sent to Backend 2: `{type, flow_id, seq, timestamp, element_id, data}`,
  plus `scope` on the events of elements inside sub-flows (absent on top-level events).
- `FlowGraph` is elements + connections + start: the shape of a flow definition and of the
  inline sub-flows of `iteration`, `loop` and `sub_flow`; `FlowDefinition` adds the `flow_id`.
- Ids — `flow_id`, `element_id`, connection `from_id` / `to_id`, port names in `from_output` /
  `to_input`, `start_element_id` — are `Id`s: 1 to `MAX_ID_LENGTH` (128) characters, all
  printable (`str.isprintable`: no control characters C0 / C1 / DEL, no bidi controls
  U+202A–U+202E, U+2066–U+2069, U+200E/F, U+061C, no line separators U+2028/2029, no
  surrogates, no invisible format characters, no whitespace but the ASCII space).
  `id_problem(value)` is the one checker, also used by `engine.validation` for dict keys
  (element keys, port names, branch names); its messages never quote the value.
  `shown(value)` quotes a value for a message only when it is a valid id, so no message
  carries an unchecked string.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

MAX_ID_LENGTH = 128


def id_problem(value: object, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why `value` is not a valid id (without quoting it), or None when it is one."""
    if not isinstance(value, str):
        return "must be a string"
    if not value:
        return "must not be empty"
    if len(value) > max_length:
        return f"is longer than {max_length:,} characters"
    if value.isprintable():
        return None
    position, char = next((i, c) for i, c in enumerate(value) if not c.isprintable())
    return f"contains {_char_kind(char)} (U+{ord(char):04X}) at character {position + 1}; ids must be printable"


def _char_kind(char: str) -> str:
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return "a control character"
    if char in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        return "a bidirectional-text control"
    if char in "\u2028\u2029":
        return "a line separator"
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate"
    if char.isspace():
        return "a whitespace character other than the space"
    return "an invisible or unassigned character"


def shown(value: object) -> str:
    """`'value'` for a message when `value` is a valid id, else a neutral placeholder."""
    return f"'{value}'" if id_problem(value) is None else "(a value not shown)"


def _valid_id(value: str) -> str:
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(f"is not a valid id: {problem}")
    return value


Id = Annotated[str, AfterValidator(_valid_id)]

PortType = Literal["string", "number", "integer", "boolean", "object", "array", "any"]

COMMON_ELEMENT_FIELDS = frozenset(
    {
        "type",
        "element_id",
        "name",
        "description",
        "input_schema",
        "output_schema",
        "on_error",
        "default_outputs",
        "timeout",
        "retry",
        "config",
        "position",
    }
)


class PortSpec(BaseModel):
    """One declared input or output of an element."""

    model_config = ConfigDict(extra="allow")

    type: PortType = "any"
    required: bool = False
    description: str | None = None


class RetryPolicy(BaseModel):
    """Retries of transient element errors, with exponential backoff and full jitter."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=3, ge=1, le=20)
    initial_delay: float = Field(default=0.2, ge=0, le=60)
    max_delay: float = Field(default=5.0, ge=0, le=300)


class ElementDefinition(BaseModel):
    """An element as the flow builder sends it: common fields plus type-specific keys."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(min_length=1, max_length=100)
    element_id: Id
    name: str = ""
    description: str = ""
    input_schema: dict[str, PortSpec] = Field(default_factory=dict)
    output_schema: dict[str, PortSpec] = Field(default_factory=dict)
    on_error: Literal["fail", "continue", "default"] = "fail"
    default_outputs: dict[str, Any] | None = None  # with on_error "default": the outputs of a failed run
    timeout: float | None = Field(default=None, gt=0, le=86400)
    retry: RetryPolicy | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    position: Any = None  # where the builder draws it (e.g. {"x": 120, "y": 40}); not used to run

    def settings(self) -> dict[str, Any]:
        """Type-specific configuration: extra top-level keys, overridden by `config`."""
        extra = dict(self.model_extra or {})
        extra.update(self.config)
        return extra

    @property
    def display_name(self) -> str:
        return self.name or self.element_id


class Connection(BaseModel):
    """An edge. Without ports it carries all source outputs to same-named target inputs."""

    model_config = ConfigDict(extra="allow")

    from_id: Id
    to_id: Id
    from_output: Id | None = None
    to_input: Id | None = None


class FlowGraph(BaseModel):
    """Elements, their connections and where the data comes in: a flow, or an inline sub-flow
    (the `flow` of `iteration`, `loop` and `sub_flow`), which has no flow id of its own."""

    model_config = ConfigDict(extra="allow")

    elements: dict[str, ElementDefinition]
    connections: list[Connection] = Field(default_factory=list)
    start_element_id: Id


class FlowDefinition(FlowGraph):
    flow_id: Id


class ExecutionConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    max_execution_time: float = Field(default=300, gt=0, le=86400)


class ExecuteRequest(BaseModel):
    """Body of `POST /execute`."""

    model_config = ConfigDict(extra="forbid")

    flow_id: Annotated[Id, Field(pattern=r"^[^/\s]+$")]
    flow_definition: FlowDefinition
    initial_inputs: dict[str, Any] = Field(default_factory=dict)
    backend2_ws_url: str = Field(min_length=1, max_length=2000)
    config: ExecutionConfig = Field(default_factory=ExecutionConfig)

    @field_validator("backend2_ws_url")
    @classmethod
    def _websocket_scheme(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("must start with ws:// or wss://")
        return value


EventType = Literal[
    "flow_started",
    "element_started",
    "llm_chunk",
    "element_completed",
    "element_error",
    "element_skipped",
    "flow_paused",
    "flow_resumed",
    "flow_completed",
]


def utc_timestamp() -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, as in the event envelope."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Event(BaseModel):
    """The envelope of every message sent to Backend 2."""

    type: EventType
    flow_id: str
    seq: int = Field(ge=1)
    timestamp: str
    element_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    scope: list[dict[str, Any]] | None = None  # inside sub-flows: [{"element_id", "index"}], outermost first

    def to_message(self) -> dict[str, Any]:
        message = self.model_dump()
        if message["element_id"] is None:
            del message["element_id"]
        if message["scope"] is None:
            del message["scope"]
        return message
