"""Escape attempts: each ends in a clean ElementError, and the host is untouched."""

import pytest

from engine.errors import ElementError

LIMITS = {"memory_mb": 100, "cpu_seconds": 2, "timeout": 5}


def attacks(canary):
    c = str(canary)
    return {
        "subclasses_walk": "def main(i):\n    return {'x': ().__class__.__mro__[1].__subclasses__()}",
        "function_globals": "def f():\n    pass\ndef main(i):\n    return {'x': str(f.__globals__)}",
        "generator_frame": "def g():\n    yield 1\ndef main(i):\n    return {'x': str(g().gi_frame.f_back)}",
        "format_traversal": "def main(i):\n    return {'x': '{0.__class__.__mro__}'.format(1)}",
        "format_map": "def main(i):\n    return {'x': '{a.__class__}'.format_map({'a': 1})}",
        "string_formatter": "import string\ndef main(i):\n    return {'x': str(string.Formatter().get_field('0.__class__', [1], {}))}",
        "import_os": "import os\ndef main(i):\n    return {'x': os.listdir('/')}",
        "dunder_import": "def main(i):\n    return {'x': str(__import__('os'))}",
        "import_subprocess": "from subprocess import run\noutputs = {}",
        "open_write": f"def main(i):\n    open({c!r}, 'w').write('x')\n    return {{}}",
        "open_read": f"def main(i):\n    return {{'x': open({c!r}).read()}}",
        "eval": "def main(i):\n    return {'x': eval('1+1')}",
        "exec": "def main(i):\n    exec('x = 1')\n    return {}",
        "compile": "def main(i):\n    return {'x': str(compile('1', 'f', 'eval'))}",
        "guard_named_parameter": "def main(inputs, _getattr_=None):\n    return {}",
        "traceback_frame": "def main(i):\n    try:\n        1/0\n    except Exception as e:\n        return {'x': str(e.__traceback__.tb_frame)}",
        "except_star": "def main(i):\n    try:\n        raise ValueError()\n    except* ValueError:\n        pass\n    return {}",
        "poison_module": "import math\nmath.sqrt = lambda x: 42\noutputs = {'x': math.sqrt(4)}",
        "getattr_dunder": "def main(i):\n    return {'x': str(getattr(i, '__class__'))}",
        "type_three_args": "def main(i):\n    return {'x': str(type('X', (), {}))}",
        "infinite_loop": "def main(i):\n    while True:\n        pass",
        "huge_allocation": "def main(i):\n    x = bytearray(10 * 1024 ** 3)\n    return {}",
        "deep_recursion": "def f(n):\n    return f(n + 1)\ndef main(i):\n    return {'x': f(0)}",
        "hundred_mb_print": "def main(i):\n    s = 'x' * 1000\n    for _ in range(100_000):\n        print(s)\n    return {}",
        "huge_output": "def main(i):\n    return {'x': 'y' * 20_000_000}",
        "fork_bomb": "import os\nwhile True:\n    os.fork()",
        "read_env": "import os\noutputs = {'x': dict(os.environ)}",
        "sys_modules": "import sys\noutputs = {'x': str(sys.modules)}",
        "builtins_module": "import builtins\noutputs = {'x': str(builtins.open)}",
        "metaclass": "class M(type):\n    pass\nclass X(metaclass=M):\n    pass\noutputs = {}",
    }


ATTACK_NAMES = list(attacks("/tmp/x"))


@pytest.mark.parametrize("name", ATTACK_NAMES)
async def test_escape_attempt_is_refused(sandbox, tmp_path, name):
    canary = tmp_path / "canary.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    code = attacks(canary if name != "open_read" else secret)[name]
    with pytest.raises(ElementError) as raised:
        result = await sandbox.run(code, {}, **LIMITS)
        if name == "poison_module":
            assert result["outputs"]["x"] != 42
            raise ElementError("module attribute was not writable", error_type="forbidden")
    assert raised.value.error_type in {
        "code_error", "forbidden", "memory_limit", "cpu_limit", "recursion_limit", "output_too_large", "timeout",
    }  # fmt: skip
    assert not canary.exists()
    assert "top secret" not in raised.value.message
    # The sandbox still serves ordinary code afterwards.
    ok = await sandbox.run("outputs = {'alive': True}", {}, **LIMITS)
    assert ok["outputs"] == {"alive": True}


def test_the_attack_suite_is_large_enough():
    assert len(ATTACK_NAMES) >= 15
