"""The services an element may call, as interfaces: what `ctx.services` offers.

Contract: `Services` has one typed attribute per service — `bedrock` (`LlmService`), `aptos`
(`AptosNode`), `sandbox` (`CodeRunner`). Elements call these interfaces and nothing else: they
never hold an SDK client, and failures reach them already mapped to `engine.errors` types with a
stable `error_type`. The implementations live in `services/` (`services.hub.ServiceHub` builds
them lazily, once per process); the runtime may replace one (the Ray runtime's sandbox is an
actor). This module imports no SDK and no service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.llm import ConverseRequest, StreamEnd, ToolReply, ToolSpec


class LlmService(Protocol):
    """Bedrock's Converse API."""

    async def generate_text(self, request: ConverseRequest, on_text: Callable[[str], None]) -> StreamEnd:
        """Stream the answer, calling `on_text` with each text delta as it arrives."""
        ...

    async def converse_tool(self, request: ConverseRequest, tool: ToolSpec) -> ToolReply:
        """One call with `tool` forced; the tool input the model gave."""
        ...


class CodeRunner(Protocol):
    """The custom-code sandbox: one fresh, isolated, resource-limited process per run."""

    async def run(
        self,
        code: str,
        inputs: dict[str, Any],
        *,
        memory_mb: int,
        cpu_seconds: int,
        timeout: float,
        label: str = "",
    ) -> dict[str, Any]:
        """The outputs of `code` run on `inputs`; `label` (`flow_id/element_id`) names the run."""
        ...


class AptosNode(Protocol):
    """An Aptos fullnode's REST API (reads, simulation, submission) and the service's signer."""


class Services(Protocol):
    @property
    def bedrock(self) -> LlmService: ...

    @property
    def aptos(self) -> AptosNode: ...

    @property
    def sandbox(self) -> CodeRunner: ...
