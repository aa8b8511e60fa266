"""A catalog of element types by their `type` name.

Contract: `ElementRegistry.register(cls)` adds a class (a type name is registered once; another
class under a taken name is a ValueError); `get(name)` finds one; `known_types()` is sorted, for
error messages that name what is accepted. The registry is a value: the runtime builds the one of
the built-in types (`runtime.catalog`) and hands it to validation, which builds the plan from it;
tests extend a copy with their own types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from engine.element import AnyElement


class ElementRegistry:
    def __init__(self, types: Iterable[type[AnyElement]] = ()):
        self._types: dict[str, type[AnyElement]] = {}
        for cls in types:
            self.register(cls)

    def register[E: type[AnyElement]](self, cls: E) -> E:
        name = cls.type_name
        if not name:
            raise ValueError(f"{cls.__name__} has no type_name")
        known = self._types.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"element type {name!r} is already registered by {known.__name__}")
        self._types[name] = cls
        return cls

    def get(self, type_name: str) -> type[AnyElement] | None:
        return self._types.get(type_name)

    def known_types(self) -> list[str]:
        return sorted(self._types)

    def with_types(self, *types: type[AnyElement]) -> ElementRegistry:
        """A copy of this registry with `types` added."""
        return ElementRegistry([*self._types.values(), *types])

    def __iter__(self) -> Iterator[type[AnyElement]]:
        return iter(self._types.values())
