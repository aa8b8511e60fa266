"""The policy in-process (no fork): compile refusals, guards, builtins, module proxies."""

import pytest

from services.sandbox import guards, policy
from services.sandbox.modules import ALLOWED_MODULES, Forbidden, ModuleProxy, guarded_import


def execute(code, inputs=None, print_limit=10_000):
    printer = guards.CappedPrint(print_limit)
    namespace = policy.restricted_globals(printer)
    exec(policy.compile_user_code(code), namespace)
    return policy.entry(namespace, inputs or {}), printer()


@pytest.mark.parametrize(
    ("code", "line", "fragment"),
    [
        ("x = 1\ny = ().__class__", 2, "_"),
        ("def main(inputs, _getattr_=None):\n    return {}", 1, "_getattr_"),
        ("def main(i):\n    return {}\n\n\nx = (", 5, "Line"),
        ("import os\nx = os.__dict__", 2, "__dict__"),
        ("def g():\n    yield 1\nx = g().gi_frame", 3, "gi_frame"),
        ("try:\n    pass\nexcept* ValueError:\n    pass", 1, "TryStar"),
        ("match 1:\n    case object(__class__=c):\n        pass", 1, "Match"),
        ("from math import *", 1, "*"),
        ("async def f():\n    pass", 1, "Async"),
        ("x = 1\nexec('y = 2')", 2, "Exec"),
    ],
)
def test_compile_refusals_name_the_line(code, line, fragment):
    with pytest.raises(policy.CodeRejected) as rejected:
        policy.compile_user_code(code)
    assert rejected.value.line == line
    assert f"Line {line}" in rejected.value.message and fragment in rejected.value.message


def test_check_user_code_is_none_for_good_code_and_survives_absurd_input():
    assert policy.check_user_code("def main(inputs):\n    return {'a': 1}") is None
    message, _ = policy.check_user_code("x = " + "-" * 100_000 + "1")
    assert "cannot be compiled" in message or "Line" in message
    assert policy.check_user_code("x = '\0'") is None or True  # never raises


def test_underscore_and_frame_attributes_are_refused_at_run_time():
    for name in ("__class__", "_x", "gi_frame", "tb_frame", "f_back", "f_globals", "co_code"):
        with pytest.raises(Forbidden):
            guards.guarded_getattr(object(), name)
    with pytest.raises(Forbidden):
        guards.guarded_getattr(ModuleProxy("math", ALLOWED_MODULES["math"]), "_attrs")


def test_format_string_traversal_is_refused():
    for obj in ("{0.__class__}", str):
        for name in ("format", "format_map"):
            with pytest.raises(Forbidden):
                guards.guarded_getattr(obj, name)
    import string

    with pytest.raises(Forbidden):
        guards.guarded_getattr(string.Formatter(), "get_field")
    assert "Formatter" not in ALLOWED_MODULES["string"] and "Template" not in ALLOWED_MODULES["string"]


def test_missing_attributes_raise_unless_a_default_is_given():
    with pytest.raises(AttributeError):
        guards.guarded_getattr({}, "nope")
    assert guards.guarded_getattr({}, "nope", 7) == 7
    assert guards.guarded_hasattr([], "append") and not guards.guarded_hasattr([], "nope")


def test_writes_only_to_plain_containers_and_user_classes():
    for ok in ({}, [], set(), bytearray()):
        assert guards.guarded_write(ok) is ok
    proxy = guarded_import("math")
    for refused in (proxy, "text", (1,), len, ALLOWED_MODULES["collections"]["Counter"]):
        with pytest.raises(Forbidden):
            guards.guarded_write(refused)
    with pytest.raises(Forbidden):
        proxy.sqrt = None


def test_builtins_are_minimal_and_dangerous_ones_refuse_clearly():
    user = guards.user_builtins()
    for dangerous in ("open", "eval", "exec", "compile", "type", "vars", "dir", "globals", "locals", "setattr",
                      "delattr", "id", "memoryview", "input", "breakpoint", "help"):  # fmt: skip
        with pytest.raises(Forbidden, match=f"{dangerous}\\(\\) is not available"):
            user[dangerous]("x")
    assert not [name for name in user if name.startswith("_") and name not in ("__import__", "__build_class__")]
    assert user["getattr"] is guards.guarded_getattr and user["__import__"] is guarded_import


def test_imports_are_limited_to_the_allow_list():
    for name in ("os", "sys", "io", "subprocess", "importlib", "builtins", "ctypes", "pickle", "gc", "inspect"):
        with pytest.raises(Forbidden, match="not allowed"):
            guarded_import(name)
    assert repr(guarded_import("json")) == "<module 'json' (sandboxed)>"


def test_augmented_assignment_to_items_and_attributes_goes_through_the_guards():
    code = """
import collections
class Acc:
    def __init__(self):
        self.total = 0
def main(inputs):
    counts = collections.defaultdict(int)
    for w in inputs["words"]:
        counts[w] += 1
    acc = Acc()
    for n in range(4):
        acc.total += n
    xs = [1, 2, 3, 4]
    xs[1:3] += [9]
    return {"counts": dict(counts), "total": acc.total, "xs": xs}
"""
    out, _ = execute(code, {"words": ["a", "b", "a"]})
    assert out == {"counts": {"a": 2, "b": 1}, "total": 6, "xs": [1, 2, 3, 9, 4]}
    with pytest.raises(Forbidden):
        execute("import math\nmath.pi += 1\noutputs = {}")


def test_print_is_collected_and_capped():
    _, printed = execute("print('a', 1, sep='-')\noutputs = {}")
    assert printed == "a-1\n"
    with pytest.raises(guards.PrintLimitExceeded):
        execute("for i in range(100):\n    print('0123456789')\noutputs = {}", print_limit=500)


def test_super_init_and_class_attributes_of_user_classes():
    code = """
class Base:
    count = 0
    def __init__(self, v):
        self.v = v
class Child(Base):
    def __init__(self, v):
        super().__init__(v * 2)
        Child.count = Child.count + 1
outputs = {"v": Child(2).v, "count": Child.count}
"""
    assert execute(code)[0] == {"v": 4, "count": 1}
    with pytest.raises(policy.CodeRejected, match="metaclass"):
        execute("class M(type):\n    pass\nclass X(metaclass=M):\n    pass\noutputs = {}")
    with pytest.raises(Forbidden):
        guards.build_class(lambda: None, "X", metaclass=ALLOWED_MODULES["collections"]["Counter"])
