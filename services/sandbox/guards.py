"""The run-time guards RestrictedPython calls, the print collector and the builtins of user code.

Contract:
- `guarded_getattr` (`_getattr_`, and the `getattr` / `hasattr` builtins) is the only way user
  code reads an attribute. It looks at the *subject* (the object, or for a `super()` proxy the
  object the proxy is bound to) and refuses with `Forbidden`:
  - names starting with `_` and the frame/code/traceback/generator attributes (`gi_frame`,
    `gi_yieldfrom`, `cr_await`, `ag_frame`, `tb_frame`, `f_back`, …);
  - `format` / `format_map` of strings and string classes, and anything of
    `string.Formatter`, `operator.attrgetter` / `methodcaller` (format-spec attribute walks,
    `"{0.__class__}".format(x)`);
  - on exceptions (instances and classes, also through `super()`): everything but `args` (its
    items checked as below), attributes the lookup finds in a class the snippet defined (a
    `super()` proxy skips ahead, as Python does), attributes set on instances of such classes,
    and a few plain-data attributes of library errors
    (`JSONDecodeError.msg/doc/pos/lineno/colno`, the same of `re.error`, `UnicodeError.encoding/
    reason/start/end/object`, only when the value is a str, bytes, int or None). So
    `AttributeError.obj/.name`, `NameError.name`, `ImportError.name/.path/.name_from`,
    `StopIteration.value`, `OSError.filename`, `with_traceback`, … are refused.
  It then defers to RestrictedPython's `safer_getattr` and checks what it got (`vet`): a module
  (a real one — `ModuleProxy` is fine), frame, code object, traceback, cell, the namespace dict
  of a module or of the run, `str.format` / `str.format_map` in any form (the method
  descriptor, a method bound to any `str`, wrapped in a bound method, `functools.partial`,
  `staticmethod` or `classmethod`), a function of `string.Formatter` or
  `collections.UserString.format*`, and instances or subclasses of `string.Formatter` /
  `operator.attrgetter` / `methodcaller` are refused, whatever route led there. A missing
  attribute raises a fresh `AttributeError` carrying only its message (RestrictedPython's
  default returns None).
- `guarded_getitem` (`_getitem_`) checks the item it returns the same way. Not checked: what
  iteration yields and what calls return; the allow-list of `modules` keeps those harmless.
- `guarded_write` (`_write_`) lets code modify dicts, lists, sets, bytearrays, deques (and their
  subclasses) and classes the snippet defined and their instances — nothing else (modules,
  library classes, functions). Violations raise `Forbidden`.
- `aug_item` / `aug_attr` make `d[k] += 1` and `self.n += 1` work with the same guards.
- `CappedPrint` collects `print` output up to a size cap (`PrintLimitExceeded` beyond it).
- `user_builtins()` is the minimal builtins set; `open`, `eval`, `exec`, `compile`, `type`,
  `vars`, `dir`, `globals`, `locals`, `setattr`, `delattr`, `id`, `memoryview`, `input`… are
  stubs that raise `Forbidden` with a clear message. `format(value, spec)` stays: a spec alone
  cannot walk attributes.
"""

from __future__ import annotations

import builtins
import collections
import functools
import json
import operator
import re
import string
from types import (
    BuiltinMethodType,
    CellType,
    CodeType,
    FrameType,
    FunctionType,
    MethodDescriptorType,
    MethodType,
    ModuleType,
    TracebackType,
)
from typing import TYPE_CHECKING, Any, cast

from RestrictedPython import safe_builtins
from RestrictedPython.Guards import raise_, safer_getattr
from RestrictedPython.transformer import INSPECT_ATTRIBUTES

from services.sandbox.modules import Forbidden, ModuleProxy, guarded_import

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    class _BoundSuper(Protocol):
        """A `super()` proxy's attributes, which typeshed's `super` does not declare."""

        __self__: Any  # the object (or class) the proxy is bound to
        __thisclass__: type  # the class whose successors in the MRO the proxy searches


_MISSING = object()
_USER_CLASS = "_sandbox_user_class"  # marker set on classes the snippet defines (unreachable: `_` name)
_WRITABLE = (dict, list, set, bytearray, collections.deque)

_FORMAT_NAMES = frozenset({"format", "format_map"})
# Objects that walk attributes named by a string (format specs, dotted names): never handed out.
_WALKER_CLASSES = (string.Formatter, operator.attrgetter, operator.methodcaller)
_REFUSED_INSTANCES = (ModuleType, FrameType, CodeType, TracebackType, CellType, *_WALKER_CLASSES)
_FORMAT_DESCRIPTORS = (str.format, str.format_map)
_WALKER_FUNCTIONS = frozenset(
    id(function)
    for function in (
        *(f for f in vars(string.Formatter).values() if isinstance(f, FunctionType)),
        collections.UserString.format,
        collections.UserString.format_map,
    )
)
_PLAIN = frozenset({str, int, float, bool, bytes, type(None), list, tuple, set, frozenset, complex})
_NAMESPACE_KEYS = ("__builtins__", "__spec__", "_getattr_")  # a module's or the run's globals
# Plain-data attributes of library exceptions (values must be str, bytes, int or None).
_EXCEPTION_DATA: tuple[tuple[type[BaseException], frozenset[str]], ...] = (
    (json.JSONDecodeError, frozenset({"msg", "doc", "pos", "lineno", "colno"})),
    (re.error, frozenset({"msg", "pattern", "pos", "lineno", "colno"})),
    (UnicodeError, frozenset({"encoding", "reason", "start", "end", "object"})),
)
_DATA = frozenset({str, bytes, int, type(None)})


class PrintLimitExceeded(Exception):
    pass


def _short(name: str) -> str:
    return name if len(name) <= 60 else name[:60] + "…"


def vet(value: Any) -> Any:
    """`value` if user code may hold it; `Forbidden` if it leads back to the interpreter or walks attributes."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, _REFUSED_INSTANCES):
        raise Forbidden(f"objects of type '{kind.__name__}' are not available")
    if kind is BuiltinMethodType:
        if value.__name__ in _FORMAT_NAMES and isinstance(value.__self__, str):
            raise Forbidden("str.format / format_map are not allowed; use f-strings or % formatting")
    elif kind is MethodDescriptorType:
        if any(value is descriptor for descriptor in _FORMAT_DESCRIPTORS):
            raise Forbidden("str.format / format_map are not allowed; use f-strings or % formatting")
    elif kind is FunctionType:
        if id(value) in _WALKER_FUNCTIONS:
            raise Forbidden("string.Formatter is not allowed")
    elif kind is MethodType:
        vet(value.__func__)
        vet(value.__self__)
    elif isinstance(value, type):
        if issubclass(value, _WALKER_CLASSES):
            raise Forbidden(f"'{value.__name__}' is not available")
    elif isinstance(value, dict):
        if any(dict.__contains__(value, key) for key in _NAMESPACE_KEYS):
            raise Forbidden("namespaces are not available")
    elif isinstance(value, functools.partial):
        vet(value.func)
    elif isinstance(value, staticmethod | classmethod):
        vet(value.__func__)
    return value


def _subject(obj: Any) -> Any:
    """What an attribute read is really about: for `super()` proxies, the object they are bound to."""
    return cast("_BoundSuper", obj).__self__ if isinstance(obj, super) else obj


def _refuse_name(subject: Any, name: str) -> None:
    if type(name) is not str:
        raise TypeError("attribute name must be a string")
    if name.startswith("_") or name in INSPECT_ATTRIBUTES:
        raise Forbidden(f"access to attribute '{_short(name)}' is not allowed")
    if name in _FORMAT_NAMES and (isinstance(subject, str) or (isinstance(subject, type) and issubclass(subject, str))):
        raise Forbidden("str.format / format_map are not allowed; use f-strings or % formatting")
    if isinstance(subject, _WALKER_CLASSES) or (isinstance(subject, type) and issubclass(subject, _WALKER_CLASSES)):
        raise Forbidden("string.Formatter, attrgetter and methodcaller are not allowed")


def _is_exception(subject: Any) -> bool:
    return isinstance(subject, BaseException) or (isinstance(subject, type) and issubclass(subject, BaseException))


def _definer(obj: Any, subject: Any, name: str) -> type | None:
    """The class where reading `name` through `obj` finds it (a `super()` proxy skips ahead)."""
    mro = (subject if isinstance(subject, type) else type(subject)).__mro__
    if isinstance(obj, super):
        start = cast("_BoundSuper", obj).__thisclass__
        mro = mro[mro.index(start) + 1 :] if start in mro else ()
    return next((k for k in mro if name in vars(k)), None)


def _exception_attribute(obj: Any, subject: Any, name: str) -> Any:
    """An attribute of an exception (instance or class) that user code may read; else `Forbidden`."""
    is_class = isinstance(subject, type)
    if name == "args" and not is_class:
        return tuple(vet(arg) for arg in obj.args)
    definer = _definer(obj, subject, name)
    if definer is not None and vars(definer).get(_USER_CLASS) is True:  # defined by the snippet
        return vet(getattr(obj, name))
    if definer is None and not is_class and obj is subject and _is_user_class(subject):
        if name in getattr(subject, "__dict__", {}):  # set on an instance of the snippet's class
            return vet(getattr(obj, name))
    if not is_class:
        for base, names in _EXCEPTION_DATA:
            if name in names and isinstance(subject, base):
                value = getattr(obj, name)
                if type(value) in _DATA:
                    return value
    getattr(obj, name)  # absent → AttributeError (so `hasattr` says False); present → refused
    raise Forbidden(f"attribute '{_short(name)}' of exceptions is not available (use .args)")


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    if name == "__init__" and isinstance(obj, super):  # super().__init__(...) in user classes
        return getattr(obj, name)
    subject = _subject(obj)
    _refuse_name(subject, name)
    try:
        if isinstance(obj, ModuleProxy):
            value = getattr(obj, name)
        elif _is_exception(subject):
            return _exception_attribute(obj, subject, name)
        else:
            value = safer_getattr(obj, name, raise_)
    except AttributeError as exc:
        message = str(exc)  # a fresh error below: the original carries `.obj` and `.name`
    else:
        return vet(value)
    if default is _MISSING:
        raise AttributeError(message)
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
    return vet(obj[key])


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
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
    cls: type = builtins.__build_class__(func, name, *bases, **keywords)
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
