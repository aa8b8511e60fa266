"""Element types by their `type` name. `@register` adds a class; `get` finds one.

Contract: a type name is registered once; `known_types()` is sorted, for error messages that
name what is accepted. Importing `elements` registers every built-in type.
"""

from __future__ import annotations

from typing import TypeVar

from elements.base import ElementBase

_REGISTRY: dict[str, type[ElementBase]] = {}

E = TypeVar("E", bound=type[ElementBase])


def register[E: type[ElementBase]](cls: E) -> E:
    name = cls.type_name
    if not name:
        raise ValueError(f"{cls.__name__} has no type_name")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"element type {name!r} is already registered by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def get(type_name: str) -> type[ElementBase] | None:
    return _REGISTRY.get(type_name)


def known_types() -> list[str]:
    return sorted(_REGISTRY)
