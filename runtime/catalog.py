"""The registry of the built-in element types, found in the modules of the `elements` package.

Contract: `builtin_registry()` imports every module of `elements` and registers each concrete
element class defined there (a subclass of `ElementBase` with a `type_name`), once per process;
the same registry is returned afterwards. Adding a type is one new class in a module of
`elements`: nothing else lists it (the README's element pages are found the same way).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil

import elements
from engine.element import AnyElement, ElementBase
from engine.registry import ElementRegistry


def builtin_element_classes() -> list[type[AnyElement]]:
    """Every element class defined in a module of `elements`, in module then definition order."""
    found: list[type[AnyElement]] = []
    for module_info in sorted(pkgutil.iter_modules(elements.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{elements.__name__}.{module_info.name}")
        for _name, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ElementBase) and cls.__module__ == module.__name__ and cls.type_name:
                found.append(cls)
    return found


@functools.cache
def builtin_registry() -> ElementRegistry:
    return ElementRegistry(builtin_element_classes())
