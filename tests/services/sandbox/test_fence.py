"""The Python fence against the classes of escape that got past the first 42 attacks.

- Format-spec attribute walks (`"{0.a.b}".format`) from every route: `super()` proxies, string
  subclasses, unbound methods, `map`/`functools`, `string.Formatter` and friends.
- Exceptions handing out what they failed on (`AttributeError.obj`, `NameError.name`,
  `ImportError.path`, `StopIteration.value`, …), directly, through `getattr` or `super()`.
- Frames, code objects, modules, namespaces: whatever the route, never handed out.
- Compile error messages are capped; nothing is compiled from a cache.

Unit tests call the guards directly (fast); the attack programs run in-process first and then
through the real `SandboxClient` (`sandbox` fixture), as a user's code would.
"""

import collections
import functools
import json
import operator
import string
import sys
import types

import pytest

from engine.errors import ElementError
from services.sandbox import guards, policy
from services.sandbox.modules import ALLOWED_MODULES, Forbidden, ModuleProxy
from tests.fixtures.sandbox import LIMITS
from tests.services.sandbox.test_attacks import CLEAN_ERRORS

SECRET = "top-secret-canary"


def execute(code, inputs=None):
    printer = guards.CappedPrint(10_000)
    namespace = policy.restricted_globals(printer)
    exec(policy.compile_user_code(code), namespace)
    return policy.entry(namespace, inputs or {})


# --- the attack programs -------------------------------------------------------------------------

_STR_SUBCLASS = "class S(str):\n    def walk(self, x):\n        return super().format(x)\n"
_GEN = "def g():\n    yield 1\n"
_FAILED_LOOKUP = "try:\n    len.nope\nexcept AttributeError as e:\n    err = e\n"


def fence_attacks(secret: str) -> dict[str, str]:
    """Each program ends in `forbidden`; without the fence it returns or leaks something."""
    return {
        # format-spec walks
        "format_via_super": _STR_SUBCLASS + "outputs = {'x': S('{0.__class__.__mro__}').walk(1)}",
        "format_map_via_super": (
            "class S(str):\n    def walk(self, m):\n        return super().format_map(m)\n"
            "outputs = {'x': S('{a.__class__}').walk({'a': 1})}"
        ),
        "format_via_super_two_args": (
            "class S(str):\n    pass\noutputs = {'x': super(S, S('{0.__class__}')).format(1)}"
        ),
        "format_via_getattr_on_super": (
            "class S(str):\n    pass\nm = getattr(super(S, S('{0.__class__}')), 'for' + 'mat')\noutputs = {'x': m(1)}"
        ),
        "format_via_super_stored": (
            "class S(str):\n    def method(self):\n        return super().format\n"
            "outputs = {'x': S('{0.__class__}').method()(1)}"
        ),
        "format_unbound_from_subclass": "class S(str):\n    pass\noutputs = {'x': S.format('{0.__class__}', 1)}",
        "format_on_subclass_instance": "class S(str):\n    pass\noutputs = {'x': S('{0.__class__}').format(1)}",
        "format_through_map": "outputs = {'x': list(map(str.format, ['{0.__class__}'], [1]))}",
        "format_through_reduce": (
            "import functools\nm = functools.reduce(getattr, ['format'], '{0.__class__}')\noutputs = {'x': m(1)}"
        ),
        "format_through_partial": (
            "import functools\nclass S(str):\n    pass\n"
            "m = functools.partial(getattr, super(S, S('{0.__class__}')))('format')\noutputs = {'x': m(1)}"
        ),
        "format_through_hasattr": "class S(str):\n    pass\noutputs = {'x': hasattr(super(S, S('')), 'format')}",
        "formatter_import": "from string import Formatter\noutputs = {'x': Formatter().vformat('{0.real}', [1], {})}",
        "user_string": "from collections import UserString\noutputs = {'x': UserString('{0.real}').format(1)}",
        "methodcaller": "from operator import methodcaller\noutputs = {'x': methodcaller('format', 1)('{0.real}')}",
        # exceptions handing out what they failed on
        "exception_obj": _FAILED_LOOKUP + "outputs = {'x': str(err.obj)}",
        "exception_obj_via_getattr": _FAILED_LOOKUP + "outputs = {'x': str(getattr(err, 'o' + 'bj'))}",
        "exception_name": _FAILED_LOOKUP + "outputs = {'x': err.name}",
        "name_error_name": "try:\n    nowhere\nexcept NameError as e:\n    outputs = {'x': e.name}",
        "import_error_path": (
            "try:\n    from json import nope\nexcept ImportError as e:\n    outputs = {'x': str(e.name) + str(e.path)}"
        ),
        "import_error_name_from": (
            "try:\n    from json import nope\nexcept ImportError as e:\n    outputs = {'x': str(e.name_from)}"
        ),
        "stop_iteration_value": "try:\n    next(iter([]))\nexcept StopIteration as e:\n    outputs = {'x': e.value}",
        "exception_with_traceback": _FAILED_LOOKUP + "outputs = {'x': str(err.with_traceback(None))}",
        "exception_class_descriptor": "outputs = {'x': str(AttributeError.obj)}",
        "exception_context_via_getattr": (
            "try:\n    try:\n        1 / 0\n    except ZeroDivisionError:\n        len.nope\n"
            "except AttributeError as e:\n    outputs = {'x': str(getattr(e, '__con' + 'text__'))}"
        ),
        # a failed format walk: the exception would hold the real builtins module → open the secret
        "format_walk_then_exception_obj": (
            _STR_SUBCLASS + "def f():\n    pass\ntry:\n"
            "    S('{0.__globals__[_getattr_].__globals__[builtins].nope}').walk(f)\n"
            "except AttributeError as e:\n    b = getattr(e, 'obj')\n"
            f"outputs = {{'x': b.open({secret!r}).read()}}"
        ),
        # frames, code, modules, namespaces
        "generator_yieldfrom_via_getattr": _GEN + "outputs = {'x': str(getattr(g(), 'gi_yield' + 'from'))}",
        "generator_code_via_getattr": _GEN + "outputs = {'x': str(getattr(g(), 'gi_co' + 'de'))}",
        "generator_frame_via_hasattr": _GEN + "outputs = {'x': hasattr(g(), 'gi_' + 'frame')}",
        "builtin_self_is_the_builtins_module": "outputs = {'x': str(getattr(len, '__se' + 'lf__'))}",
        "print_self": "outputs = {'x': str(getattr(print, '__self__'))}",
        "reduce_walk": "import functools\noutputs = {'x': str(functools.reduce(getattr, ['__self__'], len))}",
        "starmap_walk": "import itertools\noutputs = {'x': str(list(itertools.starmap(getattr, [(len, '__self__')])))}",
        "partial_walk": "import functools\noutputs = {'x': str(functools.partial(getattr, len)('__self__'))}",
        "random_function_globals": "import random\noutputs = {'x': str(getattr(random.Random.seed, '__glo' + 'bals__'))}",
        "json_hook_walk": (
            "import json\noutputs = {'x': str(json.loads('{}', object_hook=lambda d: getattr(d, '__cl' + 'ass__')))}"
        ),
        "re_match_walk": "import re\noutputs = {'x': str(getattr(re.match('a', 'a').re, '__class__'))}",
        "hidden_json_encoder": "from json import JSONEncoder\noutputs = {}",
        "namedtuple_frame_walk": (
            "import collections\nP = collections.namedtuple('P', 'a')\noutputs = {'x': str(getattr(P, '__new__'))}"
        ),
    }


FENCE_NAMES = list(fence_attacks("s"))
# Refused for another clean reason (not `forbidden`), and still no walk.
NOT_A_WALK = {
    "format_builtin_spec": "def f():\n    pass\noutputs = {'x': format(f, '{0.__globals__}')}",
    "namedtuple_injection": "import collections\nP = collections.namedtuple('P', ['a=__import__(\"os\")'])",
    "namedtuple_module_keyword": "import collections\nP = collections.namedtuple('P', 'a', module='os')",
}


@pytest.mark.parametrize("name", FENCE_NAMES)
def test_attack_is_forbidden_in_process(name):
    with pytest.raises(Forbidden):
        execute(fence_attacks("/nonexistent")[name])


@pytest.mark.parametrize("name", list(NOT_A_WALK))
def test_spec_only_formatting_and_namedtuple_fail_cleanly(name):
    with pytest.raises((ValueError, TypeError)):
        execute(NOT_A_WALK[name])


@pytest.mark.parametrize("name", FENCE_NAMES + list(NOT_A_WALK))
async def test_attack_is_refused_by_the_sandbox(sandbox, tmp_path, name):
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    code = {**fence_attacks(str(secret)), **NOT_A_WALK}[name]
    with pytest.raises(ElementError) as raised:
        await sandbox.run(code, {}, **{**LIMITS, "cpu_seconds": 1})
    error = raised.value
    assert error.error_type == ("code_error" if name in NOT_A_WALK else "forbidden"), error.message
    assert error.error_type in CLEAN_ERRORS
    assert SECRET not in error.message and "top-secret" not in error.message


# --- legit code keeps working --------------------------------------------------------------------

LEGIT = """
import collections, datetime, functools, itertools, json, math, random, re, statistics

class Base:
    def __init__(self, v):
        self.v = v

class Child(Base):
    def __init__(self, v):
        super().__init__(v * 2)

class AppError(Exception):
    kind = "app"
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code
    def describe(self):
        return f"{self.kind}:{self.code}"

def main(inputs):
    out = {"child": Child(2).v, "fstring": f"{math.pi:.2f}|{inputs['n']!r:>4}", "percent": "%s-%05.1f" % ("a", 2.5)}
    out["format"] = format(1234.5678, ",.1f") + format(255, "#x")
    try:
        raise AppError("boom", 7)
    except AppError as e:
        out["app_error"] = [e.args[0], e.code, e.describe(), e.kind, hasattr(e, "missing")]
    try:
        json.loads("{bad")
    except json.JSONDecodeError as e:
        out["json_error"] = [e.msg, e.pos, e.lineno, e.colno, e.args[0][:9]]
    try:
        re.compile("(")
    except re.error as e:
        out["re_error"] = [e.msg, e.pos]
    try:
        {}["k"]
    except KeyError as e:
        out["key"] = e.args[0]
    try:
        b"\\xff".decode("utf-8")
    except UnicodeDecodeError as e:
        out["unicode"] = [e.encoding, e.start, e.end, e.reason]
    P = collections.namedtuple("P", "x, y", defaults=[0])
    p = P(1)
    out["namedtuple"] = [p.x, p.y, list(P(3, 4)), p.count(1)]
    m = re.search(r"(?P<w>b+)", "abbbc")
    out["re"] = [m.group("w"), m.span(), m.string, m.re.pattern]
    out["json"] = json.loads(json.dumps({"a": [1, 2]}), object_hook=lambda d: sorted(d.items()))
    out["stats"] = [statistics.mean([1, 2, 3]), statistics.median([3, 1, 2])]
    rng = random.Random(4)
    out["random"] = 0 <= rng.random() < 1
    out["itertools"] = list(itertools.islice(itertools.count(), 3))
    out["functools"] = [functools.reduce(lambda a, b: a + b, [1, 2, 3]), functools.partial(max, 5)(3)]
    out["partial_func"] = functools.partial(max, 1).func(2, 3)
    out["counter"] = collections.Counter("abca").most_common(1)
    out["when"] = (datetime.datetime(2026, 1, 1) + datetime.timedelta(days=1)).isoformat()
    out["strings"] = ["a,b".split(","), "x".join("ab"), "Ab".lower()]
    return out
"""

LEGIT_OUTPUT = {
    "child": 4,
    "fstring": "3.14|   3",
    "percent": "a-002.5",
    "format": "1,234.60xff",
    "app_error": ["boom", 7, "app:7", "app", False],
    "json_error": ["Expecting property name enclosed in double quotes", 1, 1, 2, "Expecting"],
    "re_error": ["missing ), unterminated subpattern", 0],
    "key": "k",
    "unicode": ["utf-8", 0, 1, "invalid start byte"],
    "namedtuple": [1, 0, [3, 4], 1],
    "re": ["bbb", (1, 4), "abbbc", "(?P<w>b+)"],
    "json": [("a", [1, 2])],
    "stats": [2, 2],
    "random": True,
    "itertools": [0, 1, 2],
    "functools": [6, 5],
    "partial_func": 3,
    "counter": [("a", 2)],
    "when": "2026-01-02T00:00:00",
    "strings": [["a", "b"], "axb", "ab"],
}


def test_legit_code_still_works_in_process():
    assert execute(LEGIT, {"n": 3}) == LEGIT_OUTPUT


async def test_legit_code_still_works_in_the_sandbox(sandbox):
    result = await sandbox.run(LEGIT, {"n": 3}, **LIMITS)
    assert result["outputs"] == json.loads(json.dumps(LEGIT_OUTPUT))


# --- the guards, directly ------------------------------------------------------------------------


def _generator():
    yield 1


def test_vet_refuses_what_leads_back_to_the_interpreter():
    frame = sys._getframe()
    try:
        raise ValueError
    except ValueError as exc:
        traceback = exc.__traceback__
    refused = [
        sys, types, frame, frame.f_code, traceback, (lambda: frame).__closure__[0],
        vars(json), policy.restricted_globals(guards.CappedPrint(10)), {"__builtins__": {}},
        str.format, str.format_map, "{0}".format, "{a}".format_map, type("S", (str,), {})("x").format,
        functools.partial(str.format, "{0}"), staticmethod(str.format), classmethod(str.format_map),
        string.Formatter, string.Formatter(), string.Formatter.vformat, string.Formatter().get_field,
        type("F", (string.Formatter,), {}), string.Formatter.format_field, collections.UserString.format,
        operator.attrgetter("real"), operator.methodcaller("format"), operator.attrgetter,
    ]  # fmt: skip
    for value in refused:
        with pytest.raises(Forbidden):
            guards.vet(value)
    allowed = [1, "x", [sys], {"a": 1}, len, print, max, json.dumps, ModuleProxy("json", ALLOWED_MODULES["json"])]
    for value in allowed:
        assert guards.vet(value) is value


def test_getattr_checks_what_it_returns_not_only_the_receiver():
    holder = types.SimpleNamespace(module=sys, frame=sys._getframe(), fmt="{0}".format, ok=1)
    for name in ("module", "frame", "fmt"):
        with pytest.raises(Forbidden):
            guards.guarded_getattr(holder, name)
    assert guards.guarded_getattr(holder, "ok") == 1
    with pytest.raises(Forbidden):
        guards.guarded_getitem({"m": sys}, "m")


def test_getattr_looks_through_super_proxies():
    class S(str):
        pass

    for name in ("format", "format_map"):
        with pytest.raises(Forbidden):
            guards.guarded_getattr(super(S, S("{0}")), name)
    missing = ModuleNotFoundError("no", name="os", path="/secret")
    for name in ("name", "path", "msg"):
        with pytest.raises(Forbidden):
            guards.guarded_getattr(super(ModuleNotFoundError, missing), name)
    assert guards.guarded_getattr(super(ModuleNotFoundError, missing), "args") == ("no",)


def test_exceptions_give_args_and_user_attributes_only():
    try:
        len.nope  # noqa: B018
    except AttributeError as exc:
        failed = exc
    cases = [
        (failed, "obj"), (failed, "name"), (NameError("n", name="x"), "name"), (ImportError(name="os", path="/"), "path"),
        (ImportError(name="os", name_from="x"), "name_from"), (StopIteration(1), "value"), (OSError(2, "x", "/f"), "filename"),
        (failed, "with_traceback"), (failed, "add_note"), (AttributeError, "obj"), (StopIteration, "value"),
        (SystemExit(1), "code"),
    ]  # fmt: skip
    for exc, name in cases:
        with pytest.raises(Forbidden):
            guards.guarded_getattr(exc, name)
    assert guards.guarded_getattr(failed, "args") == failed.args
    assert guards.guarded_getattr(failed, "nope", 5) == 5 and not guards.guarded_hasattr(failed, "nope")
    with pytest.raises(Forbidden):
        guards.guarded_getattr(KeyError(sys), "args")  # the items of args are checked too
    with pytest.raises(Forbidden):
        guards.guarded_getattr(json.JSONDecodeError("m", "doc", 0), "with_traceback")
    assert guards.guarded_getattr(json.JSONDecodeError("m", "doc", 0), "doc") == "doc"


def test_exception_attributes_count_only_where_the_snippet_defined_them():
    base = (
        "class Base(AttributeError):\n    kind = 'b'\nclass E(Base):\n    obj = 'mine'\n"
        "e = E('x', name='n', obj=len)\n"  # the real `AttributeError.obj` slot holds len
    )
    read = "outputs = {'k': e.kind, 's': super(E, e).kind, 'a': e.args, 'o': e.obj}"
    assert execute(base + read) == {"k": "b", "s": "b", "a": ("x",), "o": "mine"}
    for read in ("super(E, e).obj", "super(Base, e).name", "getattr(super(E, e), 'ob' + 'j')", "Base.obj"):
        with pytest.raises(Forbidden):
            execute(base + f"outputs = {{'x': {read}}}")


def test_a_missing_attribute_error_carries_no_object():
    with pytest.raises(AttributeError) as raised:
        guards.guarded_getattr(len, "nope")
    assert raised.value.obj is None and raised.value.name is None
    assert raised.value.__context__ is None


def _dangerous(value):
    """An independent judgement of what must never reach user code."""
    if isinstance(value, types.ModuleType | types.FrameType | types.CodeType | types.TracebackType | types.CellType):
        return True
    if isinstance(value, dict) and ("__builtins__" in value or "__spec__" in value):
        return True
    if isinstance(value, type) and issubclass(value, string.Formatter | operator.attrgetter | operator.methodcaller):
        return True
    if getattr(value, "__name__", None) in ("format", "format_map") and isinstance(getattr(value, "__self__", 0), str):
        return True
    return value is str.format or value is str.format_map


def test_every_allowed_attribute_is_readable_and_nothing_reachable_is_dangerous():
    """A walk of each allowed module, three attribute reads deep, through the guards."""
    seen: set[int] = set()
    reached = 0
    frontier = []
    for module, attrs in ALLOWED_MODULES.items():
        proxy = ModuleProxy(module, attrs)
        for name in attrs:
            value = guards.guarded_getattr(proxy, name)  # every listed name is readable…
            assert not _dangerous(value), f"{module}.{name}"  # …and harmless
            frontier.append((f"{module}.{name}", value))
    for _depth in range(2):
        following = []
        for path, obj in frontier:
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            for name in dir(obj):
                if name.startswith("_"):
                    continue
                try:
                    value = guards.guarded_getattr(obj, name)
                except (Forbidden, AttributeError):
                    continue
                except Exception:  # noqa: BLE001 — a descriptor that needs an instance, a property failing
                    continue
                reached += 1
                assert not _dangerous(value), f"{path}.{name}"
                following.append((f"{path}.{name}", value))
        frontier = following
    assert reached > 1000


# --- compile messages and no cache ---------------------------------------------------------------


def test_compile_error_messages_are_capped():
    huge = "\n".join(f"x{i} = y.__class__" for i in range(8000))  # ~170 KB, one refusal per line
    assert len(huge) > 150_000
    with pytest.raises(policy.CodeRejected) as rejected:
        policy.compile_user_code(huge)
    message = rejected.value.message
    assert len(message) <= policy.MAX_MESSAGE_CHARS and message.endswith("…(truncated)")
    assert rejected.value.line == 1 and rejected.value.error_type == "forbidden"
    checked, line = policy.check_user_code(huge)
    assert len(checked) <= policy.MAX_MESSAGE_CHARS and line == 1
    assert policy.check_user_code("x = 1") is None


async def test_the_sandbox_caps_compile_error_messages(sandbox):
    huge = "\n".join(f"x{i} = y.__class__" for i in range(8000))
    with pytest.raises(ElementError) as raised:
        await sandbox.run(huge, {}, **LIMITS)
    assert raised.value.error_type == "forbidden"
    assert len(raised.value.message) <= policy.MAX_MESSAGE_CHARS + 200


def test_nothing_is_compiled_from_a_cache():
    code = "outputs = {'a': 1}"
    assert policy.compile_user_code(code) is not policy.compile_user_code(code)
    assert not hasattr(policy.compile_user_code, "cache_info")
    assert not hasattr(policy, "compile_cached")
