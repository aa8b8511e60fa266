"""`custom_code`: the user's Python — `def main(inputs): return {...}` or a script setting
`outputs` — compiled with RestrictedPython and run in its own resource-limited process.

Contract: validation refuses the element when `ALLOW_CUSTOM_CODE=false` and reports compile
errors with their line (problem at `…elements.<id>.code`) before the flow starts. Limits:
`memory_mb` / `cpu_seconds` default to and are capped by `CUSTOM_CODE_MAX_MEMORY_MB` /
`CUSTOM_CODE_MAX_CPU_SECONDS`; `timeout_seconds` is the wall clock (default: CPU seconds + 5).
Outputs are the dict `main` returns, plus `printed` when the code printed something. Runs go
through `ctx.services.sandbox` (in-process fork server, or the sandbox actor under Ray);
cancelling the element kills its process at once. Inputs nested more than
`engine.limits.MAX_VALUE_DEPTH` deep are refused here (`input_invalid`) before they go anywhere;
the sandbox client adds `input_too_large` (a request over its 64 MB frame) and `output_invalid`
(outputs nested too deeply), see `services.sandbox.client`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.element import ElementBase, ElementContext, Placement
from engine.errors import InputValidationError
from engine.limits import MAX_VALUE_DEPTH, depth_exceeds
from engine.settings import Settings
from services.sandbox.policy import check_user_code

DISABLED = "custom code is disabled on this server (ALLOW_CUSTOM_CODE=false)"


class CustomCodeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200_000)
    timeout_seconds: float | None = Field(default=None, gt=0, le=3600)
    memory_mb: int | None = Field(default=None, ge=16)
    cpu_seconds: int | None = Field(default=None, ge=1)


class CustomCodeElement(ElementBase[CustomCodeConfig]):
    type_name = "custom_code"
    placement = Placement.SANDBOX

    def check(self, settings: Settings) -> list[tuple[str, str]]:
        if not settings.allow_custom_code:
            return [("type", DISABLED)]
        problem = check_user_code(self.config.code)
        if problem is None:
            return []
        message, line = problem
        where = f" (line {line})" if line and f"Line {line}" not in message else ""
        return [("code", f"does not compile: {message}{where}")]

    def limits(self, settings: Settings) -> dict[str, Any]:
        config = self.config
        memory = min(config.memory_mb or settings.custom_code_max_memory_mb, settings.custom_code_max_memory_mb)
        cpu = min(config.cpu_seconds or settings.custom_code_max_cpu_seconds, settings.custom_code_max_cpu_seconds)
        timeout = config.timeout_seconds if config.timeout_seconds is not None else cpu + 5.0
        return {"memory_mb": memory, "cpu_seconds": cpu, "timeout": timeout}

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        if depth_exceeds(inputs, MAX_VALUE_DEPTH):  # before Ray or the fork server have to carry them
            raise InputValidationError(
                f"the inputs of custom code are nested more than {MAX_VALUE_DEPTH} levels deep; flatten them first"
            )
        limits = self.limits(ctx.settings)
        result = await ctx.services.sandbox.run(
            self.config.code,
            inputs,
            memory_mb=limits["memory_mb"],
            cpu_seconds=limits["cpu_seconds"],
            timeout=limits["timeout"],
            label=f"{ctx.flow_id}/{ctx.element_id}",
        )
        outputs = dict(result["outputs"])
        if result.get("printed"):
            outputs.setdefault("printed", result["printed"])
        return outputs
