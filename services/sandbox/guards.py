"""The run-time guards RestrictedPython calls, the print collector and the builtins of user code.

Contract:
- `guarded_getattr` (`_getattr_`, and the `getattr` builtin) refuses names starting with `_`,
  the frame/code/traceback attributes (`gi_frame`, `tb_frame`, `f_back`, …), `format` /
  `format_map` of strings and anything of `string.Formatter` (format-string attribute
  traversal, `"{0.__class__}".format(x)`); it then defers to RestrictedPython's `safer_getattr`.
  A missing attribute raises `AttributeError` (RestrictedPython's default returns None).
- `guarded_write` (`_write_`) lets code modify dicts, lists, sets, bytearrays, deques (and their
  subclasses) and classes the snippet defined and their instances — nothing else (modules,
  library classes, functions). Violations raise `Forbidden`.
- `aug_item` / `aug_attr` make `d[k] += 1` and `self.n += 1` work with the same guards.
- `CappedPrint` collects `print` output up to a size cap (`PrintLimitExceeded` beyond it).
- `user_builtins()` is the minimal builtins set; `open`, `eval`, `exec`, `compile`, `type`,
  `vars`, `dir`, `globals`, `locals`, `setattr`, `delattr`, `id`, `memoryview`, `input`… are
  stubs that raise `Forbidden` with a clear message.
"""

from __future__ import annotations

import builtins
import collections
import operator
import string
from typing import Any

from RestrictedPython import safe_builtins
from RestrictedPython.Guards import raise_, safer_getattr
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from services.sandbox.modules import Forbidden, ModuleProxy, guarded_import

_MISSING = object()
_USER_CLASS = "_sandbox_user_class"  # marker set on classes the snippet defines (unreachable: `_` name)
_WRITABLE = (dict, list, set, bytearray, collections.deque)


class PrintLimitExceeded(Exception):
    pass


def _refuse_name(obj: Any, name: str) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in INSPECT_ATTRIBUTES:
        raise Forbidden(f"access to attribute '{name}' is not allowed")
    if name in ("format", "format_map") and (isinstance(obj, str) or (isinstance(obj, type) and issubclass(obj, str))):
        raise Forbidden("str.format / format_map are not allowed; use f-strings or % formatting")
    if isinstance(obj, string.Formatter) or (isinstance(obj, type) and issubclass(obj, string.Formatter)):
        raise Forbidden("string.Formatter is not allowed")


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    if name == "__init__" and isinstance(obj, super):  # super().__init__(...) in user classes
        return obj.__init__
    _refuse_name(obj, name)
    try:
        if isinstance(obj, ModuleProxy):
            return getattr(obj, name)
        return safer_getattr(obj, name, raise_)
    except AttributeError:
        if default is _MISSING:
            raise
        return default


def guarded_hasattr(obj: Any, name: str) -> bool:
    absent = object()
    return guarded_getattr(obj, name, absent) is not absent


def _is_user_class(obj: Any) -> bool:
    cls = obj if isinstance(obj, type) else type(obj)
    return getattr(cls, _USER_CLASS, False) is True


def guarded_write(obj: Any) -> Any:
    if isinstance(obj, _WRITABLE) or _is_user_class(obj):
        return obj
    raise Forbidden(f"objects of type '{type(obj).__name__}' cannot be modified")


def guarded_getitem(obj: Any, key: Any) -> Any:
    return obj[key]


_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "&=": operator.iand, "|=": operator.ior, "^=": operator.ixor,
    "@=": operator.imatmul,
}  # fmt: skip


def inplacevar(op: str, target: Any, value: Any) -> Any:
    return _INPLACE[op](target, value)


def aug_item(obj: Any, key: Any, op: str, value: Any) -> None:
    """`obj[key] op= value` under the guards."""
    guarded_write(obj)[key] = inplacevar(op, guarded_getitem(obj, key), value)


def aug_attr(obj: Any, name: str, op: str, value: Any) -> None:
    """`obj.name op= value` under the guards."""
    setattr(guarded_write(obj), name, inplacevar(op, guarded_getattr(obj, name), value))


def build_class(func: Any, name: str, *bases: Any, **keywords: Any) -> type:
    """`__build_class__`: RestrictedPython passes `metaclass=__metaclass__` (= type); nothing else."""
    if keywords != {"metaclass": type}:
        raise Forbidden("class keywords (metaclass=…) are not allowed")
    cls = builtins.__build_class__(func, name, *bases, **keywords)
    setattr(cls, _USER_CLASS, True)
    return cls


class CappedPrint:
    """RestrictedPython's print collector with a cap on how much one run may print."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0

    def write(self, text: str) -> None:
        self.size += len(text)
        if self.size > self.limit:
            raise PrintLimitExceeded(f"the code printed more than {self.limit} characters")
        self.parts.append(text)

    def __call__(self) -> str:
        return "".join(self.parts)

    def _call_print(self, *objects: Any, sep: str | None = " ", end: str | None = "\n", **_: Any) -> None:
        print(*objects, sep=sep, end=end, file=self)


_REFUSED = (
    "open", "eval", "exec", "compile", "type", "vars", "dir", "globals", "locals", "setattr", "delattr", "id",
    "memoryview", "input", "breakpoint", "help", "exit", "quit",
)  # fmt: skip
_ADDED = (
    "range", "list", "tuple", "dict", "set", "frozenset", "enumerate", "zip", "map", "filter", "sorted", "reversed",
    "min", "max", "sum",
    "any", "all", "iter", "next", "bytes", "bytearray", "object", "property", "staticmethod", "classmethod",
    "super", "format", "bin", "ascii", "isinstance", "issubclass",
)  # fmt: skip


def _refused(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> None:
        hint = " (use isinstance)" if name == "type" else ""
        raise Forbidden(f"{name}() is not available{hint}")

    return refuse


def user_builtins() -> dict[str, Any]:
    """A fresh builtins dict for one run (minimal; every entry is harmless, guarded or a refusal).

    RestrictedPython's `limited_builtins` (range/list/tuple capped at 1,000 items) are replaced
    by the real ones: memory and CPU are bounded by the process limits instead.
    """
    allowed = {k: v for k, v in safe_builtins.items() if not k.startswith("_")}
    allowed.update({name: _refused(name) for name in _REFUSED})
    allowed.update({name: getattr(builtins, name) for name in _ADDED})
    allowed.update(
        {
            "__import__": guarded_import,
            "__build_class__": build_class,
            "getattr": guarded_getattr,
            "hasattr": guarded_hasattr,
        }
    )
    return allowed
