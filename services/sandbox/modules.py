"""The modules user code may import, each as a read-only proxy holding vetted attributes only.

Contract:
- `ALLOWED_MODULES` maps a module name to the attributes user code may reach. Nothing that
  leads back to the interpreter is listed: no `string.Formatter` / `string.Template`
  (format-string attribute traversal), no `operator.attrgetter` / `methodcaller` / `setitem`
  (attribute reads and item writes that would skip the guards), no module objects, loaders,
  `sys`, `os` or `__dict__`, no `collections.UserString` / `UserDict`, no `json.JSONEncoder` /
  `JSONDecoder`. Every listed attribute, and every public attribute reachable from it through
  the guards, is checked by the tests to be no module, frame, code object, namespace or
  attribute walker (`guards.vet` refuses those anyway, whatever the route).
- `collections.namedtuple` is a wrapper: type and field names become plain `str` before the
  real one builds the class, and `module` is fixed to `custom_code`, so it never walks the
  caller's frame (`sys._getframe`) and its internal `eval` only ever sees checked identifiers.
- `guarded_import` is the `__import__` of the sandbox: absolute imports of allowed modules
  only; it returns a `ModuleProxy`, never the module. A proxy cannot be written to, so a run
  cannot poison the module for later code (and every run is a fresh forked process anyway).
- `preload()` imports what the allowed modules import lazily (`_strptime`, codecs), so a child
  that may open no file still has them.
"""

from __future__ import annotations

import collections
import datetime
import functools
import importlib
import itertools
import json
import math
import operator
import random
import re
import statistics
import string
from collections.abc import Iterable
from types import MappingProxyType, ModuleType
from typing import Any


class Forbidden(Exception):
    """User code tried something the sandbox refuses (reported as error_type `forbidden`)."""


def _vetted(module: ModuleType, names: Iterable[str] | None = None, *, exclude: Iterable[str] = ()) -> dict[str, Any]:
    chosen = names if names is not None else (n for n in dir(module) if not n.startswith("_"))
    refused = set(exclude)
    return {name: getattr(module, name) for name in chosen if name not in refused}


_RE = [
    "compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split", "escape", "error",
    "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A", "Pattern", "Match",
]  # fmt: skip
_STRING = [
    "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits", "punctuation",
    "printable", "whitespace", "capwords",
]  # fmt: skip
_RANDOM = [
    "random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss", "seed", "Random",
]  # fmt: skip
_STATISTICS = [
    "mean", "fmean", "geometric_mean", "harmonic_mean", "median", "median_low", "median_high", "mode", "multimode",
    "quantiles", "stdev", "pstdev", "variance", "pvariance", "StatisticsError",
]  # fmt: skip


def namedtuple(
    typename: str, field_names: str | Iterable[str], *, rename: bool = False, defaults: Iterable[Any] | None = None
) -> type:
    """`collections.namedtuple` with plain-`str` names and no frame walk (`module` is fixed)."""
    if isinstance(field_names, str):
        field_names = str(field_names).replace(",", " ").split()
    names = [str(name) for name in field_names]
    return collections.namedtuple(str(typename), names, rename=bool(rename), defaults=defaults, module="custom_code")


_VETTED: dict[str, dict[str, Any]] = {
    "math": _vetted(math),
    "json": _vetted(json, ["dumps", "loads", "JSONDecodeError"]),
    "re": _vetted(re, _RE),
    "datetime": _vetted(datetime, ["date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR"]),
    "random": _vetted(random, _RANDOM),
    "statistics": _vetted(statistics, _STATISTICS),
    "itertools": _vetted(itertools),
    "functools": _vetted(functools, ["reduce", "partial", "lru_cache", "cache", "cmp_to_key"]),
    "collections": {
        **_vetted(collections, ["Counter", "defaultdict", "OrderedDict", "deque"]),
        "namedtuple": namedtuple,
    },
    "string": _vetted(string, _STRING),
    "operator": _vetted(operator, exclude=["attrgetter", "methodcaller", "setitem", "delitem"]),
}
ALLOWED_MODULES: dict[str, MappingProxyType[str, Any]] = {name: MappingProxyType(a) for name, a in _VETTED.items()}
# Public names of the real modules that are left out on purpose: reading one is `forbidden`.
HIDDEN: dict[str, frozenset[str]] = {
    name: frozenset(n for n in dir(importlib.import_module(name)) if not n.startswith("_")) - set(attrs)
    for name, attrs in _VETTED.items()
}


class ModuleProxy:
    """A read-only stand-in for an allowed module: reads of vetted names, nothing else."""

    __slots__ = ("_attrs", "_name")

    def __init__(self, name: str, attrs: MappingProxyType[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_attrs", attrs)

    def __getattr__(self, item: str) -> Any:
        try:
            return self._attrs[item]
        except KeyError:
            if item in HIDDEN.get(self._name, ()):
                raise Forbidden(f"'{self._name}.{item}' is not available") from None
            raise AttributeError(f"module '{self._name}' has no attribute '{item}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise Forbidden(f"module '{self._name}' is read-only")

    def __delattr__(self, key: str) -> None:
        raise Forbidden(f"module '{self._name}' is read-only")

    def __repr__(self) -> str:
        return f"<module '{self._name}' (sandboxed)>"


def guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level != 0 or name not in ALLOWED_MODULES:
        raise Forbidden(f"import of '{name}' is not allowed; allowed modules: {', '.join(sorted(ALLOWED_MODULES))}")
    return ModuleProxy(name, ALLOWED_MODULES[name])


def preload() -> None:
    """Import now what allowed modules would import on first use (a child can open no files)."""
    lazily_imported = ("_strptime", "heapq", "copy", "unicodedata", "warnings")  # by datetime, collections, re
    codecs = ("encodings.ascii", "encodings.latin_1", "encodings.utf_16", "encodings.utf_32")
    for module in lazily_imported + codecs:
        importlib.import_module(module)
    datetime.datetime.strptime("2026-01-01", "%Y-%m-%d")
