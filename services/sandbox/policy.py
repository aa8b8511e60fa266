"""Compiling user code with RestrictedPython and the namespace it runs in.

Contract:
- `compile_user_code(code)` compiles with RestrictedPython (plus one extension: augmented
  assignment to items and attributes, `d[k] += 1`, through the guards) or raises
  `CodeRejected` whose message names the line. Compile-time refusals: names and attributes
  starting with `_`, frame/traceback attributes, `match`, `async`, `except*`, star imports,
  `nonlocal`, annotations. The message is capped at `MAX_MESSAGE_CHARS` (then
  "…(truncated)"), however many problems the code has. `check_user_code` is the same as a
  `(message, line)` problem, safe to call in the service process (never runs anything).
  Nothing is cached: each call compiles.
- `restricted_globals(print_limit)` is a fresh namespace per run: the minimal builtins and every
  guard RestrictedPython calls (`_getattr_`, `_getitem_`, `_getiter_`, `_write_`,
  `_inplacevar_`, `_iter_unpack_sequence_`, `_unpack_sequence_`, `_print_`, `_apply_`).
  User code cannot name any of them (underscore names), nor shadow them (`def main(_getattr_=…)`
  is refused at compile time).
- `entry(namespace, inputs)`: `main(inputs)` when the code defines it, else the `outputs` the
  script set (a bare script finds the inputs in the global `inputs`).
"""

from __future__ import annotations

import ast
import re
import warnings
from types import CodeType
from typing import TYPE_CHECKING, Any

from RestrictedPython import compile_restricted
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.transformer import IOPERATOR_TO_STR, RestrictingNodeTransformer

from services.sandbox import guards

if TYPE_CHECKING:

    class _RestrictingNodeTransformer(ast.NodeTransformer):
        """What this module uses of RestrictedPython's transformer (untyped here: see the mypy
        overrides in pyproject.toml), so that the class below does not subclass `Any`."""

        errors: list[str]

        def node_contents_visit[N: ast.AST](self, node: N) -> N: ...
        def visit_Attribute(self, node: ast.Attribute) -> Any: ...
        def visit_AugAssign(self, node: ast.AugAssign) -> Any: ...

else:
    _RestrictingNodeTransformer = RestrictingNodeTransformer

FILENAME = "<custom_code>"
MAX_MESSAGE_CHARS = 4000
_TRUNCATED = "…(truncated)"


class CodeRejected(Exception):
    """The code does not compile: a syntax error (`code_error`) or a refusal of the policy (`forbidden`)."""

    def __init__(self, message: str, line: int | None = None, error_type: str = "code_error"):
        super().__init__(message)
        self.message = message
        self.line = line
        self.error_type = error_type


def _as_expression(index: ast.expr) -> ast.expr:
    """A subscript's index as an ordinary expression (`a:b` → `slice(a, b, None)`)."""
    if isinstance(index, ast.Slice):
        parts = [part or ast.Constant(None) for part in (index.lower, index.upper, index.step)]
        return ast.Call(func=ast.Name("slice", ast.Load()), args=parts, keywords=[])
    if isinstance(index, ast.Tuple):
        return ast.Tuple(elts=[_as_expression(e) for e in index.elts], ctx=ast.Load())
    return index


def _is_super_init(node: ast.Attribute) -> bool:
    value = node.value
    return (
        node.attr == "__init__"
        and isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id == "super"
    )


class SandboxTransformer(_RestrictingNodeTransformer):
    """RestrictedPython's policy, plus `x[k] op= v` / `x.a op= v` through `_aug_item_` / `_aug_attr_`,
    and `super().__init__` (read through `_getattr_`, which allows it on `super` objects only)."""

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if isinstance(node.ctx, ast.Load) and _is_super_init(node):
            value = self.visit(node.value)
            call = ast.Call(ast.Name("_getattr_", ast.Load()), [value, ast.Constant("__init__")], [])
            return ast.fix_missing_locations(ast.copy_location(call, node))
        return super().visit_Attribute(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> Any:
        target = node.target
        if isinstance(target, ast.Name):
            return super().visit_AugAssign(node)
        node = self.node_contents_visit(node)  # the target becomes `_write_(obj)[…]` / `_write_(obj).attr`
        if self.errors:
            return node
        written = node.target
        assert isinstance(written, ast.Subscript | ast.Attribute) and isinstance(written.value, ast.Call)
        obj = written.value.args[0]
        op = ast.Constant(IOPERATOR_TO_STR[type(node.op)])
        if isinstance(written, ast.Subscript):
            call = ast.Call(
                ast.Name("_aug_item_", ast.Load()), [obj, _as_expression(written.slice), op, node.value], []
            )
        else:
            call = ast.Call(ast.Name("_aug_attr_", ast.Load()), [obj, ast.Constant(written.attr), op, node.value], [])
        statement = ast.Expr(call)
        ast.copy_location(statement, node)
        ast.fix_missing_locations(statement)
        return statement


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else ""


def _capped(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - len(_TRUNCATED)] + _TRUNCATED


def compile_user_code(code: str) -> CodeType:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # RestrictedPython warns about `printed` never being read
            compiled: CodeType = compile_restricted(code, filename=FILENAME, mode="exec", policy=SandboxTransformer)
            return compiled
    except SyntaxError as exc:
        messages = exc.msg if isinstance(exc.msg, tuple | list) else (f"Line {exc.lineno}: {exc.msg}",)
        text = "; ".join(filter(None, (_first_line(str(m)) for m in messages)))
        match = re.search(r"Line (\d+)", text)
        error_type = "forbidden" if isinstance(exc.msg, tuple | list) and "SyntaxError" not in text else "code_error"
        raise CodeRejected(_capped(text), int(match.group(1)) if match else exc.lineno, error_type) from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes, absurd nesting
        raise CodeRejected(_capped(f"the code cannot be compiled: {type(exc).__name__}: {exc}")) from None


def check_user_code(code: str) -> tuple[str, int | None] | None:
    """None if the code compiles; else `(message, line)`."""
    try:
        compile_user_code(code)
    except CodeRejected as rejected:
        return rejected.message, rejected.line
    return None


def restricted_globals(printer: guards.CappedPrint, builtins: dict[str, Any] | None = None) -> dict[str, Any]:
    """The namespace of one run; `builtins` may be shared only by runs in different processes."""
    return {
        "__builtins__": builtins if builtins is not None else guards.user_builtins(),
        "__name__": "custom_code",
        "__metaclass__": type,
        "_getattr_": guards.guarded_getattr,
        "_getitem_": guards.guarded_getitem,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guards.guarded_write,
        "_inplacevar_": guards.inplacevar,
        "_aug_item_": guards.aug_item,
        "_aug_attr_": guards.aug_attr,
        "_print_": lambda _getattr_=None: printer,
        "_apply_": lambda func, *args, **kwargs: func(*args, **kwargs),
    }


def entry(namespace: dict[str, Any], inputs: dict[str, Any]) -> Any:
    main = namespace.get("main")
    if callable(main):
        return main(inputs)
    if "outputs" in namespace:
        return namespace["outputs"]
    raise CodeRejected("the code must define `def main(inputs): return {...}` or set `outputs = {...}`")
