"""`custom_code`: the user's Python — `def main(inputs): return {...}` or a script setting
`outputs` — compiled with RestrictedPython and run in its own resource-limited process.

Validation refuses it when `ALLOW_CUSTOM_CODE=false` and reports compile errors with their
line before the flow starts. Limits: `memory_mb` / `cpu_seconds` (capped by
`CUSTOM_CODE_MAX_MEMORY_MB` / `CUSTOM_CODE_MAX_CPU_SECONDS`), `timeout_seconds` (wall clock).
Outputs are the dict `main` returns; what the code printed is added as `printed` when non-empty.
Cancellation kills the process at once (see `services.sandbox`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from elements.base import ElementBase, ElementContext, Placement
from elements.registry import register
from engine.models import ElementDefinition
from engine.settings import Settings
from services.sandbox.policy import check_user_code


class CustomCodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000)
    timeout_seconds: float = Field(default=10, gt=0, le=600)
    memory_mb: int | None = Field(default=None, ge=16)
    cpu_seconds: int | None = Field(default=None, ge=1)


@register
class CustomCodeElement(ElementBase):
    type_name = "custom_code"
    Config = CustomCodeConfig
    placement = Placement.SANDBOX

    @classmethod
    def check(cls, definition: ElementDefinition, config: BaseModel, settings: Settings) -> list[tuple[str, str]]:
        if not settings.allow_custom_code:
            return [("type", "custom code is disabled on this server (ALLOW_CUSTOM_CODE=false)")]
        problem = check_user_code(config.code)
        if problem is None:
            return []
        message, line = problem
        return [
            ("code", f"does not compile: {message}" + (f" (line {line})" if line and "Line" not in message else ""))
        ]

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        settings = ctx.settings
        memory = min(self.config.memory_mb or settings.custom_code_max_memory_mb, settings.custom_code_max_memory_mb)
        cpu = min(self.config.cpu_seconds or settings.custom_code_max_cpu_seconds, settings.custom_code_max_cpu_seconds)
        result = await ctx.service("sandbox").run(
            self.config.code,
            inputs,
            memory_mb=memory,
            cpu_seconds=cpu,
            timeout=self.config.timeout_seconds,
            label=f"{ctx.flow_id}/{ctx.element_id}",
        )
        outputs = dict(result["outputs"])
        if result.get("printed"):
            outputs.setdefault("printed", result["printed"])
        return outputs
