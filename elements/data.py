"""`data_block`, `selector` and `merger`: static data, picking a value, combining values.

- `data_block`: outputs the static JSON in `data` — an object's keys become outputs, any other
  value is output as `data`.
- `selector`: outputs `value`, found by `path` (`a.b[0].c`) in the input named by `input_key`
  (default: all inputs as one object); a missing path gives `default` when one is set, else an
  error naming the missing segment.
- `merger`: outputs `merged`, combining its inputs in order (declared `input_schema` names
  first, then the others by name; absent and null inputs are ignored) by `strategy`: `object`
  (merge objects; a non-object input is added under its input name), `list` (concatenate;
  non-lists are appended), `string` (join with `separator`), `first` (first non-null).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from elements.paths import PathMissing, parse_path, resolve
from engine.element import ElementBase, ElementContext
from engine.errors import ElementError

_MISSING = object()


class DataBlockConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: Any = None


class DataBlockElement(ElementBase[DataBlockConfig]):
    type_name = "data_block"

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        data = self.config.data
        return dict(data) if isinstance(data, dict) else {"data": data}


class SelectorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str
    input_key: str | None = None
    default: Any = _MISSING

    @field_validator("path")
    @classmethod
    def _valid_path(cls, path: str) -> str:
        parse_path(path)
        return path


class SelectorElement(ElementBase[SelectorConfig]):
    type_name = "selector"
    fixed_outputs = frozenset({"value"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        source = inputs if self.config.input_key is None else inputs.get(self.config.input_key)
        try:
            return {"value": resolve(source, self.config.path)}
        except PathMissing as missing:
            if self.config.default is not _MISSING:
                return {"value": self.config.default}
            raise ElementError(
                f"selector '{self.definition.display_name}': {missing}; set 'default' to allow it",
                error_type="path_not_found",
            ) from None


class MergerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strategy: Literal["object", "list", "string", "first"] = "object"
    separator: str = ""


class MergerElement(ElementBase[MergerConfig]):
    type_name = "merger"
    fixed_outputs = frozenset({"merged"})

    def _ordered(self, inputs: dict[str, Any]) -> list[tuple[str, Any]]:
        declared = [name for name in self.definition.input_schema if name in inputs]
        rest = sorted(name for name in inputs if name not in self.definition.input_schema)
        return [(name, inputs[name]) for name in declared + rest if inputs[name] is not None]

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        values = self._ordered(inputs)
        strategy = self.config.strategy
        if strategy == "first":
            return {"merged": values[0][1] if values else None}
        if strategy == "string":
            return {"merged": self.config.separator.join(str(v) for _, v in values)}
        if strategy == "list":
            merged_list: list[Any] = []
            for _, value in values:
                if isinstance(value, list):
                    merged_list.extend(value)
                else:
                    merged_list.append(value)
            return {"merged": merged_list}
        merged: dict[str, Any] = {}
        for name, value in values:
            if isinstance(value, dict):
                merged.update(value)
            else:
                merged[name] = value
        return {"merged": merged}
