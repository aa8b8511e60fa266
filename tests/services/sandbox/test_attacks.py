"""Escape attempts: each ends in a clean ElementError, and the host is untouched.

"Untouched": a canary file the code tries to create does not exist afterwards, a secret file it
tries to read never shows up in the error, and the same sandbox still runs ordinary code.
The OS layer on its own, as if RestrictedPython had been bypassed, is `tests/services/sandbox/test_isolation.py`.
"""

import pytest

from engine.errors import ElementError
from tests.fixtures.sandbox import LIMITS, isolated_client

CLEAN_ERRORS = {
    "code_error", "forbidden", "memory_limit", "cpu_limit", "recursion_limit", "output_too_large", "timeout",
}  # fmt: skip


def attacks(canary: str, secret: str) -> dict[str, str]:
    return {
        "subclasses_walk": "def main(i):\n    return {'x': ().__class__.__mro__[1].__subclasses__()}",
        "subclasses_via_getattr": "outputs = {'x': str(getattr(getattr((), '__cl' + 'ass__'), '__mro__'))}",
        "function_globals": "def f():\n    pass\ndef main(i):\n    return {'x': str(f.__globals__)}",
        "function_globals_via_getattr": "def f():\n    pass\noutputs = {'x': str(getattr(f, '__glob' + 'als__'))}",
        "generator_frame": "def g():\n    yield 1\ndef main(i):\n    return {'x': str(g().gi_frame.f_back)}",
        "generator_frame_via_getattr": "def g():\n    yield 1\noutputs = {'x': str(getattr(g(), 'gi_' + 'frame'))}",
        "format_traversal": "def main(i):\n    return {'x': '{0.__class__.__mro__}'.format(1)}",
        "format_on_str_class": "outputs = {'x': str.format('{0.__class__}', 1)}",
        "format_map": "def main(i):\n    return {'x': '{a.__class__}'.format_map({'a': 1})}",
        "string_formatter": "import string\noutputs = {'x': str(string.Formatter().get_field('0.__class__', [1], {}))}",
        "operator_attrgetter": "import operator\noutputs = {'x': str(operator.attrgetter('__class__')(1))}",
        "import_os": "import os\ndef main(i):\n    return {'x': os.listdir('/')}",
        "dunder_import": "def main(i):\n    return {'x': str(__import__('os'))}",
        "import_subprocess": "from subprocess import run\noutputs = {}",
        "import_relative": "from . import client\noutputs = {}",
        "open_write": f"def main(i):\n    open({canary!r}, 'w').write('x')\n    return {{}}",
        "open_read": f"def main(i):\n    return {{'x': open({secret!r}).read()}}",
        "eval": "def main(i):\n    return {'x': eval('1+1')}",
        "exec": "def main(i):\n    exec('x = 1')\n    return {}",
        "compile": "def main(i):\n    return {'x': str(compile('1', 'f', 'eval'))}",
        "globals_vars_dir": "outputs = {'x': str(globals() or vars() or dir())}",
        "guard_named_parameter": "def main(inputs, _getattr_=None):\n    return {}",
        "guard_assignment": "_write_ = lambda o: o\noutputs = {}",
        "traceback_frame": "try:\n    1/0\nexcept Exception as e:\n    outputs = {'x': str(e.__traceback__.tb_frame)}",
        "traceback_via_getattr": "try:\n    1/0\nexcept Exception as e:\n    outputs = {'x': str(getattr(e, '__trace' + 'back__'))}",
        "except_star": "try:\n    raise ValueError()\nexcept* ValueError:\n    pass\noutputs = {}",
        "match_class_pattern": "match 1:\n    case object(__class__=c):\n        outputs = {'x': str(c)}",
        "poison_module": "import math\nmath.sqrt = lambda x: 42\noutputs = {'x': math.sqrt(4)}",
        "poison_library_class": "import collections\ncollections.Counter.most_common = len\noutputs = {}",
        "type_three_args": "outputs = {'x': str(type('X', (), {}))}",
        "metaclass": "class M(type):\n    pass\nclass X(metaclass=M):\n    pass\noutputs = {}",
        "module_internals": "import json\noutputs = {'x': str(getattr(json, '_' + 'attrs'))}",
        "infinite_loop": "def main(i):\n    while True:\n        pass",
        "huge_allocation": "def main(i):\n    x = bytearray(10 * 1024 ** 3)\n    return {}",
        "deep_recursion": "def f(n):\n    return f(n + 1)\ndef main(i):\n    return {'x': f(0)}",
        "hundred_mb_print": "def main(i):\n    s = 'x' * 1000\n    for _ in range(100_000):\n        print(s)\n    return {}",
        "huge_output": "def main(i):\n    return {'x': 'y' * 20_000_000}",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "read_env": "import os\noutputs = {'x': dict(os.environ)}",
        "sys_modules": "import sys\noutputs = {'x': str(sys.modules)}",
        "builtins_module": "import builtins\noutputs = {'x': str(builtins.open)}",
        "raise_system_exit": "raise SystemExit(0)",
    }


ATTACK_NAMES = list(attacks("c", "s"))


@pytest.mark.parametrize("name", ATTACK_NAMES)
async def test_escape_attempt_is_refused(sandbox, tmp_path, name):
    canary, secret = tmp_path / "canary.txt", tmp_path / "secret.txt"
    secret.write_text("top-secret-canary")
    code = attacks(str(canary), str(secret))[name]
    with pytest.raises(ElementError) as raised:
        await sandbox.run(code, {}, **{**LIMITS, "cpu_seconds": 1})
    assert raised.value.error_type in CLEAN_ERRORS, raised.value.message
    assert not canary.exists()
    assert "top-secret-canary" not in raised.value.message
    ok = await sandbox.run("outputs = {'alive': True}", {}, **LIMITS)
    assert ok["outputs"] == {"alive": True}


async def test_every_attempt_is_refused_with_the_service_running_as_a_non_root_uid(tmp_path, world_dir):
    """The same attacks with the fork server as the Dockerfile's uid 10001 (root is the fixture above)."""
    canary, secret = world_dir / "canary.txt", world_dir / "secret.txt"
    secret.write_text("top-secret-canary")
    secret.chmod(0o644)
    client = isolated_client(tmp_path, as_service=True)
    try:
        for name, code in attacks(str(canary), str(secret)).items():
            with pytest.raises(ElementError) as raised:
                await client.run(code, {}, **{**LIMITS, "cpu_seconds": 1})
            assert raised.value.error_type in CLEAN_ERRORS, (name, raised.value.message)
            assert "top-secret-canary" not in raised.value.message, name
        assert not canary.exists()
        assert (await client.run("outputs = {'alive': True}", {}, **LIMITS))["outputs"] == {"alive": True}
    finally:
        client.terminate()
        await client.aclose()


def test_the_attack_suite_is_large_enough():
    assert len(ATTACK_NAMES) >= 15


async def test_a_poisoned_module_is_not_seen_by_the_next_run(sandbox):
    with pytest.raises(ElementError):
        await sandbox.run("import math\nmath.pi = 3\noutputs = {}", {}, **LIMITS)
    result = await sandbox.run("import math\noutputs = {'pi': math.pi}", {}, **LIMITS)
    assert result["outputs"]["pi"] > 3.14
