"""A hostile run (plain Python, as if RestrictedPython were broken) never kills the fork server and
never delays a concurrent normal run beyond its own limits; the wall-clock kill always applies."""

import asyncio
import time

import pytest

from engine.errors import ElementError
from tests.fixtures.sandbox import LIMITS, isolated_client, run_code, run_unrestricted

NORMAL = "def main(inputs):\n    return {'n': inputs['n'] * 2}"


@pytest.fixture(params=[False, True], ids=["root", "service"])
async def hostile_sandbox(request, tmp_path):
    client = isolated_client(tmp_path, request.param)
    await client.start()
    yield client
    client.terminate()
    await client.aclose()


async def _normal_run_is_prompt(client, limit: float = 4.0) -> None:
    t0 = time.monotonic()
    assert await run_code(client, NORMAL, {"n": 21}) == {"n": 42}
    assert time.monotonic() - t0 < limit


async def _error_of(awaitable) -> ElementError:
    with pytest.raises(ElementError) as raised:
        await awaitable
    return raised.value


@pytest.mark.parametrize(
    "answer",
    [
        b'{"ok": true}',
        b'{"ok": true, "outputs": [1], "printed": ""}',
        b'{"ok": false, "error_type": "sandbox_unavailable", "message": "x"}',
        b'{"ok": true, "outputs": {}, "printed": "", "extra": 1}',
        b"[" * 100_000,
        b"not json",
    ],
)
async def test_a_malformed_answer_is_that_runs_protocol_error(hostile_sandbox, answer):
    server = hostile_sandbox.server_pid
    code = f"import os\nos.write(3, {answer!r})\nos._exit(0)"
    error = await _error_of(run_unrestricted(hostile_sandbox, code))
    assert error.error_type == "sandbox_protocol"
    await _normal_run_is_prompt(hostile_sandbox)
    assert hostile_sandbox.server_pid == server


async def test_a_forged_answer_for_another_run_reaches_nobody(hostile_sandbox):
    victim = asyncio.create_task(
        hostile_sandbox.run(
            "def main(i):\n    x = 0\n    for _ in range(3_000_000):\n        x += 1\n    return {'mine': x}",
            {},
            **LIMITS,
        )
    )
    await asyncio.sleep(0.2)
    forged = b'{"id": "run-1", "ok": true, "outputs": {"forged": true}, "printed": ""}'
    code = (
        f"import os\nfor n in range(1, 5):\n    os.write(3, {forged!r}.replace(b'run-1', b'run-%d' % n))\nos._exit(0)"
    )
    error = await _error_of(run_unrestricted(hostile_sandbox, code))
    assert error.error_type == "sandbox_protocol"
    assert (await victim)["outputs"] == {"mine": 3_000_000}


async def test_a_run_that_closes_its_pipe_and_sleeps_is_killed_at_its_timeout(hostile_sandbox):
    code = "import os, time\nos.close(3)\ntime.sleep(30)\noutputs = {}"
    t0 = time.monotonic()
    sleeper = asyncio.create_task(run_unrestricted(hostile_sandbox, code, timeout=2, cpu_seconds=30))
    await asyncio.sleep(0.3)
    await _normal_run_is_prompt(hostile_sandbox)
    error = await _error_of(sleeper)
    assert error.error_type == "timeout" and time.monotonic() - t0 < 8


async def test_fork_attempts_fail_and_hurt_nobody(hostile_sandbox):
    code = (
        "import os, threading\nresults = []\nfor _ in range(50):\n    try:\n        os.fork()\n"
        "        results.append('forked')\n    except OSError as exc:\n        results.append(type(exc).__name__)\n"
        "try:\n    threading.Thread(target=lambda: None).start()\n    thread = 'started'\n"
        "except Exception as exc:\n    thread = type(exc).__name__\noutputs = {'forks': sorted(set(results)), 'thread': thread}"
    )
    out = await run_unrestricted(hostile_sandbox, code)
    assert "forked" not in out["forks"] and out["thread"] != "started"
    await _normal_run_is_prompt(hostile_sandbox)


async def test_a_huge_compile_runs_under_the_runs_own_limits(hostile_sandbox):
    lines = [f"c{i} = ({'(2 ** 64) * ' * 20}1, 'x' * 4000, {list(range(20))})" for i in range(600)]
    code = "\n".join(lines) + "\noutputs = {}"
    assert 150_000 < len(code) < 400_000
    huge = [
        asyncio.create_task(hostile_sandbox.run(code, {}, **{**LIMITS, "cpu_seconds": 1, "timeout": 10}))
        for _ in range(2)
    ]
    await asyncio.sleep(0.2)
    await _normal_run_is_prompt(hostile_sandbox)
    for task in huge:
        try:
            await task
        except ElementError as exc:
            assert exc.error_type in {"cpu_limit", "memory_limit", "timeout", "code_error"}
    await _normal_run_is_prompt(hostile_sandbox)


async def test_output_flood_is_capped_and_the_server_survives(hostile_sandbox):
    code = "import os\nwhile True:\n    os.write(3, b'x' * 65536)"
    error = await _error_of(run_unrestricted(hostile_sandbox, code, output_limit=100_000, timeout=10))
    assert error.error_type == "output_too_large"
    await _normal_run_is_prompt(hostile_sandbox)
