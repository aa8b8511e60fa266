"""Ordinary code gives correct results in the sandbox; limits and cancellation hold."""

import asyncio
import os
import time

import psutil
import pytest

from engine.errors import ElementError

LIMITS = {"memory_mb": 100, "cpu_seconds": 2, "timeout": 5}


async def run(sandbox, code, inputs=None, **limits):
    return (await sandbox.run(code, inputs or {}, **{**LIMITS, **limits}))["outputs"]


async def test_ordinary_python_works(sandbox):
    code = """
import math, json, re, datetime, statistics, itertools, functools, collections, string, random

class Box:
    def __init__(self, v):
        self.v = v
    def double(self):
        return self.v * 2

def main(inputs):
    nums = [n for n in inputs["nums"] if n % 2 == 0]
    total = 0
    for n in nums:
        total += n
    counts = collections.Counter("abracadabra")
    d = {"k": 1}
    d["j"] = 2
    return {
        "evens": nums,
        "total": total,
        "sqrt": math.sqrt(16),
        "json": json.loads('{"a": [1, 2]}')["a"],
        "match": re.findall(r"\\d+", "a1b22c333"),
        "date": datetime.date(2026, 11, 25).isoformat(),
        "mean": statistics.mean([1, 2, 3]),
        "pairs": list(itertools.combinations([1, 2, 3], 2)),
        "product": functools.reduce(lambda a, b: a * b, [1, 2, 3, 4]),
        "common": counts.most_common(1),
        "box": Box(21).double(),
        "fmt": f"{math.pi:.2f}|{'x':>3}|%d" % 5,
        "cap": string.capwords("hello world"),
        "keys": sorted(d),
        "seeded": random.Random(1).randint(1, 10**6) == random.Random(1).randint(1, 10**6),
    }
"""
    out = await run(sandbox, code, {"nums": [1, 2, 3, 4, 5, 6]})
    assert out["evens"] == [2, 4, 6] and out["total"] == 12 and out["sqrt"] == 4.0
    assert out["json"] == [1, 2] and out["match"] == ["1", "22", "333"] and out["date"] == "2026-11-25"
    assert out["mean"] == 2 and out["pairs"] == [[1, 2], [1, 3], [2, 3]] and out["product"] == 24
    assert out["common"] == [["a", 5]] and out["box"] == 42 and out["fmt"] == "3.14|  x|5"
    assert out["cap"] == "Hello World" and out["keys"] == ["j", "k"] and out["seeded"] is True


async def test_bare_script_setting_outputs_and_print(sandbox):
    result = await sandbox.run("print('hello')\noutputs = {'v': 1 + 1}", {}, **LIMITS)
    assert result["outputs"] == {"v": 2} and result["printed"] == "hello\n"


async def test_each_run_is_a_fresh_process_that_sees_no_other_runs_state(sandbox):
    first = await sandbox.run(
        "import math\nCOUNTER = []\ndef main(i):\n    COUNTER.append(1)\n    return {'c': len(COUNTER)}", {}, **LIMITS
    )
    second = await sandbox.run(
        "def main(i):\n    try:\n        return {'seen': len(COUNTER) > 0}\n    except NameError:\n        return {'seen': False}",
        {},
        **LIMITS,
    )
    assert first["outputs"] == {"c": 1}
    assert first["pid"] != second["pid"]
    assert second["outputs"] == {"seen": False}


async def test_compile_errors_name_the_line(sandbox):
    with pytest.raises(ElementError) as raised:
        await run(sandbox, "def main(inputs):\n    return {\n")
    assert raised.value.error_type == "code_error" and "Line" in raised.value.message


async def test_runtime_errors_name_the_line(sandbox):
    with pytest.raises(ElementError) as raised:
        await run(sandbox, "def main(inputs):\n    x = 1\n    return {'v': x / 0}")
    assert "ZeroDivisionError" in raised.value.message and "(line 3)" in raised.value.message


async def test_main_must_return_a_dict(sandbox):
    with pytest.raises(ElementError, match="must return a dict"):
        await run(sandbox, "def main(inputs):\n    return [1]")


async def test_wall_clock_timeout_kills_the_child(sandbox):
    t0 = time.monotonic()
    with pytest.raises(ElementError) as raised:
        await run(sandbox, "def main(i):\n    x = 0\n    while True:\n        x += 1", cpu_seconds=30, timeout=0.5)
    assert raised.value.error_type == "timeout"
    assert time.monotonic() - t0 < 1.5


async def test_cancel_kills_the_child_at_once(sandbox):
    task = asyncio.create_task(
        sandbox.run("def main(i):\n    while True:\n        pass", {}, memory_mb=100, cpu_seconds=30, timeout=30)
    )
    await sandbox.start()
    server = psutil.Process(sandbox.server_pid)
    while not (children := server.children()):
        await asyncio.sleep(0.01)
    assert len(children) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 1
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        assert time.monotonic() < deadline, "the child outlived its cancellation by 1 s"
        await asyncio.sleep(0.02)


async def test_cancel_while_the_fork_server_starts_leaves_no_process(sandbox):
    before = {p.pid for p in psutil.Process().children()}
    task = asyncio.create_task(sandbox.run("outputs = {}", {}, **LIMITS))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    leftover = [p for p in psutil.Process().children() if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
    assert leftover == []


async def test_fork_server_environment_has_no_secrets(monkeypatch):
    from services.sandbox.client import SandboxClient

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-sandbox-secret")
    monkeypatch.setenv("API_KEY", "canary-sandbox-api-key")
    client = SandboxClient()
    try:
        await client.run("outputs = {}", {}, **LIMITS)
        environ = psutil.Process(client.server_pid).environ()
        assert "AWS_SECRET_ACCESS_KEY" not in environ and "API_KEY" not in environ
        assert "canary" not in repr(environ)
    finally:
        await client.aclose()
    assert os.environ["API_KEY"] == "canary-sandbox-api-key"
