"""What user code may do: RestrictedPython compilation, guards, builtins and modules.

Contract:
- `compile_user_code(code)` compiles with RestrictedPython or raises `CodeRejected` with the
  line number. Underscore names and attributes are refused at compile time.
- `restricted_globals(output_limit)` builds a fresh namespace per run: minimal builtins
  (no open, eval, exec, compile, __import__ of anything but the allow-list, getattr only
  through the guard), every guard RestrictedPython calls (`_getattr_` refuses `_*`,
  `str.format`/`format_map` and `string.Formatter`; `_write_` only lets code mutate lists,
  dicts, sets and instances of classes it defined itself), a `print` collector with a size cap.
- Imports: only `ALLOWED_MODULES`, each as a read-only proxy holding only vetted attributes, so
  no module object, `sys`, loader or `__dict__` is ever reachable from user code.
- `entry(namespace)`: user code defines `main(inputs)`; a bare script sets `outputs`.
"""

from __future__ import annotations

import builtins
import collections
import datetime
import functools
import itertools
import json
import math
import operator
import random
import re
import statistics
import string
from types import MappingProxyType
from typing import Any

from RestrictedPython import compile_restricted, limited_builtins, safe_builtins, utility_builtins
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)


class CodeRejected(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


class PrintLimitExceeded(Exception):
    pass


def _public(module: Any, names: list[str] | None = None) -> dict[str, Any]:
    names = names if names is not None else [n for n in dir(module) if not n.startswith("_")]
    return {name: getattr(module, name) for name in names}


_RE_NAMES = [
    "compile", "search", "match", "fullmatch", "findall", "finditer", "sub", "subn", "split", "escape",
    "IGNORECASE", "I", "MULTILINE", "M", "DOTALL", "S", "VERBOSE", "X", "ASCII", "A", "error", "Pattern", "Match",
]  # fmt: skip
_STRING_NAMES = [
    "ascii_letters", "ascii_lowercase", "ascii_uppercase", "digits", "hexdigits", "octdigits", "punctuation",
    "printable", "whitespace", "capwords",
]  # fmt: skip

ALLOWED_MODULES: dict[str, dict[str, Any]] = {
    "math": _public(math),
    "json": _public(json, ["dumps", "loads", "JSONDecodeError"]),
    "re": _public(re, _RE_NAMES),
    "datetime": _public(datetime, ["date", "datetime", "time", "timedelta", "timezone", "MINYEAR", "MAXYEAR"]),
    "random": _public(random, ["random", "randint", "randrange", "choice", "choices", "shuffle", "sample",
                               "uniform", "gauss", "seed", "Random"]),
    "statistics": _public(statistics, ["mean", "median", "mode", "stdev", "pstdev", "variance", "pvariance",
                                       "fmean", "geometric_mean", "harmonic_mean", "quantiles", "median_low",
                                       "median_high", "multimode"]),
    "itertools": _public(itertools),
    "functools": _public(functools, ["reduce", "partial", "lru_cache", "cache", "cmp_to_key"]),
    "collections": _public(collections, ["Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "ChainMap"]),
    "string": _public(string, _STRING_NAMES),
    "operator": _public(operator, [n for n in dir(operator) if not n.startswith("_") and n not in
                                   ("attrgetter", "methodcaller")]),
}  # fmt: skip


class ModuleProxy:
    """A read-only stand-in for an allowed module: attribute reads of vetted names only."""

    __slots__ = ("_attrs", "_name")

    def __init__(self, name: str, attrs: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_attrs", MappingProxyType(dict(attrs)))

    def __getattr__(self, item: str) -> Any:
        try:
            return self._attrs[item]
        except KeyError:
            raise AttributeError(f"module '{self._name}' has no allowed attribute '{item}'") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"module '{self._name}' is read-only")

    def __repr__(self) -> str:
        return f"<module '{self._name}' (restricted)>"


def _guarded_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level != 0 or name not in ALLOWED_MODULES:
        allowed = ", ".join(sorted(ALLOWED_MODULES))
        raise ImportError(f"import of '{name}' is not allowed; allowed modules: {allowed}")
    return ModuleProxy(name, ALLOWED_MODULES[name])


def _write_guard(obj: Any) -> Any:
    if getattr(type(obj), "_sandbox_class", False):
        return obj
    return full_write_guard(obj)


def _build_class(func: Any, name: str, *bases: Any, **kwargs: Any) -> type:
    if set(kwargs) - {"metaclass"} or kwargs.get("metaclass", type) is not type:
        raise TypeError("class keywords (metaclass=…) are not allowed")
    cls = builtins.__build_class__(func, name, *bases)
    cls._sandbox_class = True  # instances may have attributes set; user code cannot read `_*`
    return cls


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
}  # fmt: skip


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def _getitem(obj: Any, key: Any) -> Any:
    return obj[key]


def _getattr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, ModuleProxy):
        return getattr(obj, name) if default is None else getattr(obj, name, default)
    return safer_getattr(obj, name) if default is None else safer_getattr(obj, name, default)


class CappedPrint:
    """RestrictedPython's print collector, with a cap on what one run may print."""

    def __init__(self, limit: int, _getattr_: Any = None):
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limit:
            raise PrintLimitExceeded(f"printed more than {self.limit} characters")
        self.parts.append(text)

    def __call__(self) -> str:
        return "".join(self.parts)

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        kwargs.pop("file", None)
        print(*objects, file=self, **kwargs)


_REMOVED_BUILTINS = {"setattr", "delattr", "id"}


def _builtins() -> dict[str, Any]:
    allowed = {k: v for k, v in safe_builtins.items() if k not in _REMOVED_BUILTINS}
    allowed.update(limited_builtins)
    allowed.update({k: v for k, v in utility_builtins.items() if k in ("set", "frozenset")})
    allowed.update(
        {
            "__import__": _guarded_import,
            "__build_class__": _build_class,
            "getattr": _getattr,
            "hasattr": lambda obj, name: _hasattr(obj, name),
            "dict": dict, "enumerate": enumerate, "zip": zip, "map": map, "filter": filter, "sorted": sorted,
            "reversed": reversed, "min": min, "max": max, "sum": sum, "any": any, "all": all, "iter": iter,
            "next": next, "list": list, "tuple": tuple, "bytes": bytes, "object": object, "property": property,
            "staticmethod": staticmethod, "classmethod": classmethod, "isinstance": isinstance,
        }
    )  # fmt: skip
    return allowed


def _hasattr(obj: Any, name: str) -> bool:
    try:
        _getattr(obj, name)
        return True
    except Exception:
        return False


def compile_user_code(code: str, filename: str = "<custom_code>") -> Any:
    try:
        return compile_restricted(code, filename=filename, mode="exec")
    except SyntaxError as exc:
        messages = exc.msg if isinstance(exc.msg, tuple | list) else (exc.msg or str(exc),)
        text = "; ".join(str(m).strip().splitlines()[0] for m in messages if str(m).strip())
        match = re.search(r"Line (\d+)", text)
        raise CodeRejected(text, exc.lineno or (int(match.group(1)) if match else None)) from None


def check_user_code(code: str) -> tuple[str, int | None] | None:
    """None if the code compiles; else `(message, line)`."""
    try:
        compile_user_code(code)
    except CodeRejected as rejected:
        return rejected.message, rejected.line
    return None


def restricted_globals(print_limit: int) -> dict[str, Any]:
    return {
        "__builtins__": _builtins(),
        "__name__": "custom_code",
        "__metaclass__": type,
        "_getattr_": _getattr,
        "_getitem_": _getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": _write_guard,
        "_inplacevar_": _inplacevar,
        "_print_": lambda _getattr_=None: _PRINTER,
        "_apply_": lambda func, *args, **kwargs: func(*args, **kwargs),
    }


_PRINTER = CappedPrint(0)


def install_printer(limit: int) -> CappedPrint:
    """The print collector of this run (one run per process, so a module global is enough)."""
    global _PRINTER
    _PRINTER = CappedPrint(limit)
    return _PRINTER


def entry(namespace: dict[str, Any], inputs: dict[str, Any]) -> Any:
    main = namespace.get("main")
    if callable(main):
        return main(inputs)
    if "outputs" in namespace:
        return namespace["outputs"]
    raise CodeRejected("define `def main(inputs): return {...}` or set `outputs = {...}`")
