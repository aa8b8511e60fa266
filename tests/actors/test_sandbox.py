"""The sandbox actor on a real Ray: results, error types, secrets, cancellation, readable names.

Ray starts once for this module (only if nothing started it before; shut down only if it was
started here). The actor gets a name of its own so that it never shares state with the
service's `custom-code-sandbox`.
"""

import asyncio
import os

import psutil
import pytest

from engine.errors import ElementError
from engine.settings import Settings
from tests.fixtures.sandbox import LIMITS, assert_gone, wait_for_busy_runs
from tests.fixtures.service import CANARIES

pytestmark = pytest.mark.ray

CANARY = CANARIES["AWS_SECRET_ACCESS_KEY"]


@pytest.fixture(scope="module")
def ray_module(ray_runtime):
    """The session's Ray runtime; its workers' environment holds the canary secrets."""
    return ray_runtime


@pytest.fixture(scope="module")
def actor_client(ray_module):
    from actors.sandbox import SandboxActorClient

    client = SandboxActorClient(Settings(_env_file=None), name=f"test-sandbox-{os.getpid()}")
    yield client
    ray_module.kill(client.actor)


async def test_runs_code_through_the_actor(actor_client):
    result = await actor_client.run(
        "def main(inputs):\n    print('hi')\n    return {'n': inputs['n'] * 3}",
        {"n": 5},
        label="flow-1/code-1",
        **LIMITS,
    )
    assert result["outputs"] == {"n": 15} and result["printed"] == "hi\n"


async def test_error_types_survive_the_actor_boundary(actor_client):
    for code, error_type in [
        ("import os", "forbidden"),
        ("outputs = 1 / 0", "code_error"),
        ("while True:\n    pass", "timeout"),
    ]:
        with pytest.raises(ElementError) as raised:
            await actor_client.run(code, {}, **{**LIMITS, "timeout": 0.5})
        assert raised.value.error_type == error_type


async def test_fork_server_started_by_the_actor_has_no_secrets(actor_client):
    pid = await actor_client.actor.server_pid.remote()
    from services.sandbox.client import sandbox_environment

    environ = psutil.Process(pid).environ()
    assert CANARY not in repr(environ) and set(environ) <= set(sandbox_environment())


async def test_cancelling_the_caller_kills_the_child(actor_client):
    server = psutil.Process(await actor_client.actor.server_pid.remote())
    task = asyncio.create_task(
        actor_client.run("while True:\n    pass", {}, memory_mb=100, cpu_seconds=30, timeout=30, label="flow-2/busy")
    )
    children = await wait_for_busy_runs(server.pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(children, timeout=10)


async def test_fifty_concurrent_runs(actor_client):
    code = "def main(inputs):\n    return {'n': inputs['n']}"
    results = await asyncio.gather(*(actor_client.run(code, {"n": n}, **LIMITS) for n in range(50)))
    assert [r["outputs"]["n"] for r in results] == list(range(50))


def test_the_sandbox_resource_is_configurable():
    from actors.sandbox import actor_options

    assert "resources" not in actor_options(Settings(_env_file=None))
    options = actor_options(Settings(_env_file=None, sandbox_resource="sandbox"))
    assert set(options["resources"]) == {"sandbox"} and options["num_cpus"] == 0
    assert options["max_concurrency"] >= 1000 and options["name"] == "custom-code-sandbox"
