"""Conditions of a `case` element: `{field, operator, value}` evaluated over its inputs.

Contract: `Condition` validates its operator and, for `regex`, compiles the pattern at config
time. `holds(inputs)` reads `field` (a path, see `elements.paths`; a missing field is `None`)
and applies the operator. Comparing values of incompatible types raises `ElementError`
naming the field, never a bare TypeError. A `regex` is matched with the `regex` package and a
timeout (`REGEX_TIMEOUT`; case runs inline on the coordinator's loop, so a catastrophic
pattern must not stall it): running out of time is an `ElementError` (`regex_timeout`).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Literal

import regex
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from elements.paths import PathMissing, parse_path, resolve
from engine.errors import ElementError

Operator = Literal[
    "==", "!=", ">", ">=", "<", "<=", "contains", "not_contains", "starts_with", "ends_with",
    "is_empty", "is_not_empty", "regex",
]  # fmt: skip


REGEX_TIMEOUT = 0.05  # seconds per match


def _regex(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    try:
        return regex.search(pattern, str(value), timeout=REGEX_TIMEOUT) is not None
    except TimeoutError:
        raise ElementError(
            f"regex {pattern!r} took over {REGEX_TIMEOUT * 1000:g} ms on a {len(str(value))}-character value; "
            "simplify the pattern (nested repetition backtracks exponentially)",
            error_type="regex_timeout",
        ) from None


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
    "regex": _regex,
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
                regex.compile(self.value)
            except regex.error as exc:
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
