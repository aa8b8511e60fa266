"""The element contract — the source of truth for what an element is.

An element type is one small class on `ElementBase[ItsConfig]` in a module of the `elements`
package; the runtime's catalog (`runtime.catalog`) finds and registers it, nothing else to add.
This module imports no element and no service: elements, validation and the scheduler depend on
it, never the other way round.

- `type_name`: the `type` string accepted in flow definitions.
- The config model: the type parameter (`class LlmTextElement(ElementBase[LlmConfig])`), a
  pydantic model of the type-specific settings, also reachable as the class attribute `Config`;
  `self.config` is typed by it. They arrive as the extra top-level
  keys of the element definition (as in the seed: `"temperature": 0.7`) or inside a nested
  `"config": {...}`; the nested object wins. Validation errors of `Config` are reported by
  `/execute` as 422 problems at `flow_definition.elements.<id>.<field>` before anything runs.
  `check(settings)` may add problems of its own (compile errors, a feature switched off by the
  environment).
- `__init__` is light: it keeps the definition and the validated config, nothing else. Heavy
  clients (boto3, aptos RestClient, the sandbox fork server) live in `services/` and are
  reached through the typed interfaces of `ctx.services` (`engine.ports.Services`:
  `.bedrock`, `.aptos`, `.sandbox`): created once per process, never per call. Elements never
  touch an SDK client.
- `async execute(inputs, ctx)` receives the resolved inputs (already checked against
  `input_schema`) and returns a dict of outputs (checked against `output_schema` afterwards),
  or an `ElementResult` when it also selects output ports (routing elements: `case`,
  `flow_select`). It must never block the event loop: blocking SDK calls go to a thread in the
  service, CPU-heavy work goes elsewhere by `placement`.
- Streaming: an element with `streams = True` calls `ctx.emit_chunk(text)` for every piece of
  text as it arrives; each becomes an `llm_chunk` event between its `element_started` and
  `element_completed`.
- Errors: raise `engine.errors.ElementError` (or a subclass) with a message that names the
  field and what to do. Errors with `transient = True` (`TransientError`: throttling, network)
  are retried when the element has a `retry` policy; anything else fails at once.
- Cancellation: the scheduler cancels the running coroutine (timeout, flow deadline, user
  cancel, a sibling's failure). An element that holds an external resource (an LLM stream, a
  sandbox process) releases it in `except asyncio.CancelledError` / `finally` at once.
- `placement` says where the runtime may run it: `INLINE` (trivial; runs in the coordinator's
  event loop — a Ray task would cost 1–350 ms for microseconds of work), `IO` (awaits network
  I/O through `services/`; also on the coordinator's loop, blocking SDK calls in threads),
  `SANDBOX` (user code; the service routes it to the sandbox actor's fork server), `TASK`
  (CPU-heavy; a Ray task of its own).
- `routes = True` marks elements whose connections name a branch in `from_output`;
  `branch_ports()` lists the branch names that exist, for validation.
- Sub-flows: an element that runs an inline sub-flow (`iteration`, `loop`, `sub_flow`) returns
  it from `inner_flow()`; validation checks it like a flow (paths through it), the plan keeps
  its plan, and at run time `ctx.sub_flow.run(inputs, index)` runs it once — its elements in
  the same run, their events carrying a `scope` — and returns its end element's outputs, or
  raises `SubFlowFailed` (`RunStopped` when the whole flow is stopping: never absorb that).
- `is_output = True` marks the element whose outputs become the flow's outputs (`end`).
- Waiting: an element whose `wait(inputs)` returns a `Wait` is not executed; the run waits
  there for a person or a program (`wait_for_input`) and pauses once nothing else can run.
  Its outputs are what `POST /flows/{id}/resume` supplies, checked against its `input_schema`
  (`waits = True`: validation does not hold its incoming connections to that schema).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, get_args

from pydantic import BaseModel, ConfigDict

from engine.models import ElementDefinition, FlowGraph

if TYPE_CHECKING:
    from engine.ports import Services
    from engine.settings import Settings


class Placement(enum.StrEnum):
    INLINE = "inline"
    IO = "io"
    SANDBOX = "sandbox"
    TASK = "task"


class NoConfig(BaseModel):
    """Config of an element type without type-specific settings; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class ElementResult:
    """Outputs of a run, and for routing elements the branch ports that were taken."""

    outputs: dict[str, Any]
    ports: frozenset[str] | None = None  # None: every connection of the element is active


ERROR_PORT = "error"  # `from_output` of connections taken only when their element failed


@dataclass(frozen=True)
class Wait:
    """What a waiting element asks for: the text shown, and the seconds it waits (None: forever)."""

    prompt: str
    timeout: float | None = None


class SubFlowRunner(Protocol):
    """Runs the inline sub-flow of the element it was given to (see `ElementBase.inner_flow`)."""

    async def run(self, inputs: dict[str, Any], index: int) -> dict[str, Any]:
        """Run the sub-flow once with `inputs` as its start element's inputs; `index` tells this
        run apart in event scopes and checkpoints (unique per run of the element). Returns the
        outputs of its end element ({} when none completed)."""
        ...


@dataclass
class ElementContext:
    """What a running element may use besides its inputs."""

    flow_id: str
    element_id: str
    settings: Settings
    services: Services  # typed interfaces to Bedrock, Aptos and the sandbox; built lazily, per process
    emit_chunk_event: Callable[[str, int], object] = field(default=lambda chunk, index: None)
    sub_flow: SubFlowRunner | None = None  # set for elements whose `inner_flow()` is not None
    _chunk_index: int = 0

    def emit_chunk(self, text: str) -> None:
        """Relay one piece of streamed text as an `llm_chunk` event (index 0, 1, 2, …)."""
        self.emit_chunk_event(text, self._chunk_index)
        self._chunk_index += 1


class ElementBase[C: BaseModel]:
    """One element of a flow: its definition and its validated config of type `C`."""

    type_name: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]] = NoConfig  # set from the type parameter by __init_subclass__
    placement: ClassVar[Placement] = Placement.INLINE
    streams: ClassVar[bool] = False
    routes: ClassVar[bool] = False
    is_output: ClassVar[bool] = False
    waits: ClassVar[bool] = False  # its `input_schema` describes what a resume supplies, not its incoming data
    fixed_outputs: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            args = get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                cls.Config = args[0]

    def __init__(self, definition: ElementDefinition, config: C):
        self.definition = definition
        self.config = config

    @property
    def element_id(self) -> str:
        return self.definition.element_id

    @classmethod
    def from_definition(cls, definition: ElementDefinition) -> Self:
        """The element with its type-specific settings validated; raises pydantic.ValidationError."""
        config: Any = cls.Config.model_validate(definition.settings())  # an instance of C, by __init_subclass__
        return cls(definition, config)

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        """Extra problems as `(sub_path, message)`; `sub_path` is relative to the element."""
        return []

    def branch_ports(self) -> frozenset[str]:
        """Routing elements: the branch names connections may use in `from_output`."""
        return frozenset()

    def output_ports(self) -> frozenset[str] | None:
        """Names a connection may use in `from_output`; None when not declared (no check)."""
        if self.routes:
            return self.branch_ports()
        declared = frozenset(self.definition.output_schema)
        if not declared:
            return None
        return declared | self.fixed_outputs

    def inner_flow(self) -> FlowGraph | None:
        """The inline sub-flow this element runs (`ctx.sub_flow`), or None (the default)."""
        return None

    def wait(self, inputs: dict[str, Any]) -> Wait | None:
        """A `Wait` when reaching this element pauses the flow instead of executing it (raise
        `ElementError` for inputs it cannot use); None, the default: the element executes."""
        return None

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any] | ElementResult:
        raise NotImplementedError


AnyElement = ElementBase[Any]
