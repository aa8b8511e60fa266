"""`random_generator`: a random `value` — `int` or `float` in [min, max], a `choice` from
`choices`, or a `uuid`. With `seed` the value is reproducible (a private generator per run;
the process-wide `random` state is never touched)."""

from __future__ import annotations

import math
import random
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from engine.element import ElementBase, ElementContext


def _is_whole(number: int | float) -> bool:
    return isinstance(number, int) or number.is_integer()


class RandomConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["int", "float", "choice", "uuid"] = "int"
    min: int | float = 0
    max: int | float = 100
    choices: list[Any] | None = None
    seed: int | str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> RandomConfig:
        if not all(isinstance(bound, int) or math.isfinite(bound) for bound in (self.min, self.max)):
            raise ValueError("min and max must be finite numbers")
        if self.mode in ("int", "float") and self.min > self.max:
            raise ValueError(f"min ({self.min}) must not be greater than max ({self.max})")
        if self.mode == "choice" and not self.choices:
            raise ValueError("mode 'choice' needs a non-empty 'choices' list")
        if self.mode == "int" and not all(_is_whole(bound) for bound in (self.min, self.max)):
            raise ValueError("mode 'int' needs whole numbers for min and max")
        return self


class RandomGeneratorElement(ElementBase[RandomConfig]):
    type_name = "random_generator"
    fixed_outputs = frozenset({"value"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        config = self.config
        rng = random.Random(config.seed) if config.seed is not None else random.SystemRandom()
        if config.mode == "int":
            return {"value": rng.randint(int(config.min), int(config.max))}
        if config.mode == "float":
            return {"value": rng.uniform(config.min, config.max)}
        if config.mode == "choice":
            return {"value": rng.choice(config.choices or [])}  # never empty here: the config model checks
        return {"value": str(uuid.UUID(int=rng.getrandbits(128), version=4))}
