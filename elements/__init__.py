"""Element types. Importing this package imports every module in it, so each `@register`
class in a module here is a known type: adding a type is one new class and its `@register`."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "registry"}:
        importlib.import_module(f"{__name__}.{_module.name}")
