"""Conditions of a `case` element: `{field, operator, value}` evaluated over its inputs.

Contract: `Condition` validates its operator and, for `regex`, compiles the pattern at config
time. `holds(inputs)` reads `field` (a path, see `elements.paths`; a missing field is `None`)
and applies the operator. Comparing values of incompatible types raises `ElementError`
naming the field, never a bare TypeError.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from elements.paths import PathMissing, parse_path, resolve
from engine.errors import ElementError

Operator = Literal[
    "==", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "starts_with", "ends_with",
    "is_empty", "is_not_empty", "regex",
]  # fmt: skip


def _is_empty(value: Any, _: Any) -> bool:
    return value is None or (hasattr(value, "__len__") and len(value) == 0)


def _contains(container: Any, item: Any) -> bool:
    if container is None:
        return False
    return item in container


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "contains": _contains,
    "not_contains": lambda a, b: not _contains(a, b),
    "starts_with": lambda a, b: str(a).startswith(str(b)) if a is not None else False,
    "ends_with": lambda a, b: str(a).endswith(str(b)) if a is not None else False,
    "is_empty": _is_empty,
    "is_not_empty": lambda a, b: not _is_empty(a, b),
    "regex": lambda a, b: a is not None and re.search(b, str(a)) is not None,
}


class Condition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field: str
    operator: Operator
    value: Any = None

    @field_validator("field")
    @classmethod
    def _valid_path(cls, path: str) -> str:
        parse_path(path)
        return path

    @model_validator(mode="after")
    def _valid_regex(self) -> Condition:
        if self.operator == "regex":
            if not isinstance(self.value, str):
                raise ValueError("a regex condition needs a string pattern in 'value'")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        return self

    def holds(self, inputs: dict[str, Any], case_id: str) -> bool:
        try:
            actual = resolve(inputs, self.field)
        except PathMissing as missing:
            actual, found = None, f"missing: {missing}"
        else:
            found = type(actual).__name__
        try:
            return bool(_OPERATORS[self.operator](actual, self.value))
        except TypeError:
            raise ElementError(
                f"case '{case_id}': cannot compare field '{self.field}' ({found}) "
                f"{self.operator} {self.value!r} ({type(self.value).__name__}); make the types match",
                error_type="condition_type_mismatch",
            ) from None
