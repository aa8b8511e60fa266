"""SandboxClient: ordinary code gives correct results; limits, isolation and cancellation hold;
inputs too deep or too large are refused before anything is sent, outputs too deep after."""

import asyncio
import os
import signal
import time

import psutil
import pytest

from engine.errors import ElementError
from engine.limits import MAX_VALUE_DEPTH, measure
from services.sandbox import protocol
from services.sandbox.client import SandboxClient, decode_answer
from tests.fixtures.sandbox import LIMITS, assert_gone, run_code, wait_for_busy_runs

ORDINARY = """
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
    d["k"] += 10
    squares = {n: n * n for n in range(3)}
    return {
        "evens": nums, "total": total, "squares": squares, "keys": sorted(d), "k": d["k"],
        "sqrt": math.sqrt(16),
        "json": json.loads('{"a": [1, 2]}')["a"],
        "match": re.findall(r"\\d+", "a1b22c333"),
        "date": (datetime.date(2026, 11, 24) + datetime.timedelta(days=1)).isoformat(),
        "parsed": datetime.datetime.strptime("2026-11-25", "%Y-%m-%d").day,
        "mean": statistics.mean([1, 2, 3]),
        "pairs": list(itertools.combinations([1, 2, 3], 2)),
        "product": functools.reduce(lambda a, b: a * b, [1, 2, 3, 4]),
        "common": counts.most_common(1),
        "box": Box(21).double(),
        "fmt": f"{math.pi:.2f}|{'x':>3}|%d" % 5,
        "cap": string.capwords("hello world"),
        "seeded": random.Random(1).randint(1, 10**6) == random.Random(1).randint(1, 10**6),
        "big_range": sum(range(100_000)),
    }
"""


async def test_ordinary_python_works(sandbox):
    out = await run_code(sandbox, ORDINARY, {"nums": [1, 2, 3, 4, 5, 6]})
    assert out["evens"] == [2, 4, 6] and out["total"] == 12 and out["squares"] == {"0": 0, "1": 1, "2": 4}
    assert out["keys"] == ["j", "k"] and out["k"] == 11 and out["sqrt"] == 4.0
    assert out["json"] == [1, 2] and out["match"] == ["1", "22", "333"]
    assert out["date"] == "2026-11-25" and out["parsed"] == 25
    assert out["mean"] == 2 and out["pairs"] == [[1, 2], [1, 3], [2, 3]] and out["product"] == 24
    assert out["common"] == [["a", 5]] and out["box"] == 42 and out["fmt"] == "3.14|  x|5"
    assert out["cap"] == "Hello World" and out["seeded"] is True and out["big_range"] == 4999950000


async def test_bare_script_setting_outputs_and_print(sandbox):
    result = await sandbox.run("print('hello')\noutputs = {'v': inputs['n'] + 1}", {"n": 1}, **LIMITS)
    assert result["outputs"] == {"v": 2} and result["printed"] == "hello\n"


async def test_each_run_is_a_fresh_process_that_sees_no_other_runs_state(sandbox):
    first = await sandbox.run(
        "STATE = [1]\ndef main(i):\n    STATE.append(2)\n    return {'n': len(STATE)}", {}, **LIMITS
    )
    second = await sandbox.run(
        "try:\n    outputs = {'seen': len(STATE)}\nexcept NameError:\n    outputs = {}", {}, **LIMITS
    )
    assert first["outputs"] == {"n": 2} and second["outputs"] == {}
    assert first["pid"] != second["pid"]


async def test_concurrent_runs_each_get_their_own_process(sandbox):
    code = "def main(inputs):\n    return {'n': inputs['n'] * 2}"
    results = await asyncio.gather(*(sandbox.run(code, {"n": n}, **LIMITS) for n in range(20)))
    assert [r["outputs"]["n"] for r in results] == [n * 2 for n in range(20)]
    assert len({r["pid"] for r in results}) == 20


@pytest.mark.parametrize(
    ("code", "error_type", "fragment"),
    [
        ("def main(inputs):\n    return {\n", "code_error", "Line 2"),
        (
            "def main(inputs):\n    x = 1\n    return {'v': x / 0}",
            "code_error",
            "ZeroDivisionError: division by zero (line 3)",
        ),
        ("def main(inputs):\n    return [1]", "code_error", "must return a dict"),
        ("outputs = {'s': {1, 2}}", "code_error", "must be JSON"),
        ("x = 1", "code_error", "def main(inputs)"),
        ("import os", "forbidden", "import of 'os' is not allowed"),
    ],
)
async def test_errors_are_clean_and_name_the_line(sandbox, code, error_type, fragment):
    with pytest.raises(ElementError) as raised:
        await run_code(sandbox, code)
    assert raised.value.error_type == error_type and fragment in raised.value.message


async def test_wall_clock_timeout_kills_the_child(sandbox):
    t0 = time.monotonic()
    with pytest.raises(ElementError) as raised:
        await run_code(sandbox, "while True:\n    pass", cpu_seconds=30, timeout=0.5)
    assert raised.value.error_type == "timeout" and time.monotonic() - t0 < 10  # the CPU limit is 30 s


async def test_cpu_limit(sandbox):
    with pytest.raises(ElementError) as raised:
        await run_code(sandbox, "while True:\n    pass", cpu_seconds=1, timeout=10)
    assert raised.value.error_type == "cpu_limit"


async def _running_children(client):
    return await wait_for_busy_runs(client.server_pid)


async def test_cancel_kills_the_child_at_once(sandbox):
    await sandbox.start()
    task = asyncio.create_task(run_code(sandbox, "while True:\n    pass", cpu_seconds=30, timeout=30))
    children = await _running_children(sandbox)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(children)


async def test_cancel_while_the_fork_server_starts_leaves_no_process(sandbox):
    before = {p.pid for p in psutil.Process().children()}
    task = asyncio.create_task(run_code(sandbox, "outputs = {}"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    leftover = [p for p in psutil.Process().children() if p.pid not in before]
    assert_gone(leftover, timeout=2)


async def test_a_dead_fork_server_fails_its_runs_and_is_restarted(sandbox):
    await sandbox.start()
    first_server = sandbox.server_pid
    task = asyncio.create_task(run_code(sandbox, "while True:\n    pass", cpu_seconds=30, timeout=30))
    children = await _running_children(sandbox)
    os.killpg(first_server, signal.SIGKILL)
    with pytest.raises(ElementError) as raised:
        await task
    assert raised.value.error_type == "sandbox_unavailable" and raised.value.transient
    assert await run_code(sandbox, "outputs = {'ok': 1}") == {"ok": 1}
    assert sandbox.server_pid != first_server
    assert_gone(children)


async def test_fork_server_environment_has_no_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-sandbox-secret")
    monkeypatch.setenv("API_KEY", "canary-sandbox-api-key")
    monkeypatch.setenv("APTOS_PRIVATE_KEY", "canary-sandbox-aptos")
    client = SandboxClient()
    try:
        await run_code(client, "outputs = {}")
        environ = psutil.Process(client.server_pid).environ()
        assert not {"AWS_SECRET_ACCESS_KEY", "API_KEY", "APTOS_PRIVATE_KEY"} & set(environ)
        assert "canary" not in repr(environ)
    finally:
        await client.aclose()


async def test_closing_the_client_stops_the_server_and_its_children():
    client = SandboxClient()
    await client.start()
    server = psutil.Process(client.server_pid)
    task = asyncio.create_task(run_code(client, "while True:\n    pass", cpu_seconds=30, timeout=30))
    children = await _running_children(client)
    await client.aclose()
    assert_gone([server, *children], timeout=10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


# -- sizes and depth are checked before anything is sent ------------------------------------------


def nested(levels, leaf=None):
    value = leaf
    for _ in range(levels):
        value = [value]
    return value


async def assert_refused(client, inputs, error_type, *fragments, code="outputs = {}"):
    with pytest.raises(ElementError) as raised:
        await client.run(code, inputs, **LIMITS)
    assert raised.value.error_type == error_type, raised.value.message
    for fragment in fragments:
        assert fragment in raised.value.message
    assert client._waiting == {}
    return raised.value


async def assert_still_works(client):
    assert await run_code(client, "def main(inputs):\n    return {'n': inputs['n'] + 1}", {"n": 1}) == {"n": 2}
    assert client._waiting == {}


@pytest.mark.parametrize("levels", [MAX_VALUE_DEPTH, 1_500, 100_000])
async def test_inputs_nested_too_deeply_are_refused_before_anything_starts(sandbox, levels):
    await assert_refused(sandbox, {"v": nested(levels)}, "input_invalid", f"more than {MAX_VALUE_DEPTH} levels")
    assert sandbox.server_pid is None  # refused before the fork server was even needed
    await assert_still_works(sandbox)
    await assert_refused(sandbox, {"v": nested(levels)}, "input_invalid")  # and with a running server
    await assert_still_works(sandbox)


async def test_inputs_at_the_depth_limit_run(sandbox):
    inputs = {"v": nested(MAX_VALUE_DEPTH - 2, [])}  # the inputs dict is one level, [] another
    assert measure(inputs).depth == MAX_VALUE_DEPTH
    code = "def main(inputs):\n    v, n = inputs['v'], 1\n    while v:\n        v, n = v[0], n + 1\n    return {'n': n}"
    assert await run_code(sandbox, code, inputs) == {"n": MAX_VALUE_DEPTH - 1}


@pytest.mark.parametrize("inputs", [{"s": {1, 2}}, {"b": b"bytes"}, {"o": object()}])
async def test_inputs_that_are_not_json_are_refused(sandbox, inputs):
    await assert_refused(sandbox, inputs, "input_invalid", "JSON")
    await assert_still_works(sandbox)


async def test_one_output_wired_into_23_inputs_is_too_large_and_the_server_survives(sandbox):
    await sandbox.start()
    server = sandbox.server_pid
    big = "\x01" * 500_000  # each character is 6 bytes of JSON (\u0001): 3 MB per input, 69 MB in all
    inputs = {f"in{i}": big for i in range(23)}
    error = await assert_refused(sandbox, inputs, "input_too_large", "69,000,", "67,108,864 bytes (64.0 MB)")
    assert "the inputs are" in error.message
    await assert_still_works(sandbox)
    assert sandbox.server_pid == server


async def test_the_whole_request_is_measured_code_included(sandbox, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME", 100_000)
    code = "outputs = {}\n" + "#" * 100_000
    await assert_refused(
        sandbox, {}, "input_too_large", "the run request (code and inputs) is", "100,000 bytes", code=code
    )
    await assert_refused(sandbox, {"x": "y" * 100_001}, "input_too_large", "the inputs are")
    await assert_still_works(sandbox)


async def test_non_ascii_text_is_sent_as_utf8_not_escaped(sandbox, monkeypatch):
    monkeypatch.setattr(protocol, "MAX_FRAME", 1_000_000)  # 300,000 × é: 0.6 MB as UTF-8, 1.8 MB escaped
    code = "def main(inputs):\n    return {'n': len(inputs['t']), 'same': inputs['t'] == 'é' * 300_000}"
    assert await run_code(sandbox, code, {"t": "é" * 300_000}) == {"n": 300_000, "same": True}


async def test_a_lone_surrogate_still_crosses(sandbox):
    code = "def main(inputs):\n    return {'same': inputs['t'] == '\\ud800x', 'n': len(inputs['t'])}"
    assert await run_code(sandbox, code, {"t": "\ud800x"}) == {"same": True, "n": 2}


@pytest.mark.parametrize("levels", [MAX_VALUE_DEPTH + 1, 1_200])
async def test_outputs_nested_too_deeply_are_output_invalid(sandbox, levels):
    code = f"def main(inputs):\n    v = []\n    for _ in range({levels - 2}):\n        v = [v]\n    return {{'v': v}}"
    with pytest.raises(ElementError) as raised:
        await run_code(sandbox, code)
    assert raised.value.error_type == "output_invalid" and f"more than {MAX_VALUE_DEPTH} levels" in raised.value.message
    assert sandbox._waiting == {}
    await assert_still_works(sandbox)


def test_an_answer_too_deep_to_decode_fails_only_its_run():
    body = b'{"id":"run-7","pid":1,"ok":true,"outputs":{"v":' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    assert decode_answer(body) == {
        "id": "run-7",
        "ok": False,
        "error_type": "output_invalid",
        "message": f"the outputs are nested more than {MAX_VALUE_DEPTH} levels deep; return flatter data",
    }
    with pytest.raises(ValueError):
        decode_answer(b"[" * 100_000 + b"]" * 100_000)


# -- fair slots ------------------------------------------------------------------------------------------


async def test_time_waiting_for_a_slot_counts_against_the_timeout():
    client = SandboxClient(max_concurrent_runs=1)
    try:
        hog = asyncio.create_task(run_code(client, "while True:\n    pass", cpu_seconds=30, timeout=20, label="hog/e"))
        await client.start()
        await wait_for_busy_runs(client.server_pid)
        t0 = time.monotonic()
        with pytest.raises(ElementError) as raised:
            await run_code(client, "outputs = {}", timeout=1.0, label="victim/e")
        assert raised.value.error_type == "timeout" and "slot" in raised.value.message
        assert time.monotonic() - t0 < 10  # not the hog's 20 s
        hog.cancel()
        await asyncio.gather(hog, return_exceptions=True)
    finally:
        client.terminate()
        await client.aclose()


async def test_one_flow_holding_every_slot_does_not_starve_another(sandbox):
    sandbox.max_concurrent_runs, sandbox.max_runs_per_flow = 4, 4
    done = []

    async def run(label, seconds):
        code = (
            f"def main(inputs):\n    n = 0\n    while n < {int(seconds * 2_000_000)}:\n        n += 1\n    return {{}}"
        )
        await run_code(sandbox, code, cpu_seconds=30, timeout=120, label=label)
        done.append(label)

    hog = [asyncio.create_task(run(f"hog/{i}", 0.2)) for i in range(16)]
    await asyncio.sleep(0.2)
    await run("victim/e", 0)
    hog_done_before_victim = len(done) - 1
    await asyncio.gather(*hog)
    # First come, first served would run all 16 of the hog's runs first; in turn, at most a round.
    assert hog_done_before_victim <= 8, done
