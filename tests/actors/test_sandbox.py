"""The sandbox actors on a real Ray: results, error types, secrets, cancellation, readable names,
one actor per node and how runs are spread over them, what happens when a node's actor fails.

Ray starts once for this module (only if nothing started it before; shut down only if it was
started here). The actors get a base name of their own so that they never share state with the
service's `custom-code-sandbox-<node>`. The session's Ray has one node: a second node is played
by an id Ray does not know (its actor can never start), listed by the `list_nodes` the client is
given; the balancing itself is checked on the pure `SandboxNodes`, and real second nodes in
`tests/e2e/test_multinode.py`.
"""

import asyncio
import logging
import os
import secrets

import psutil
import pytest

from engine.errors import ElementError
from engine.settings import Settings
from tests.fixtures.sandbox import LIMITS, assert_gone, wait_for_busy_runs
from tests.fixtures.service import CANARIES

pytestmark = pytest.mark.ray

CANARY = CANARIES["AWS_SECRET_ACCESS_KEY"]
ECHO = "def main(inputs):\n    return {'n': inputs['n']}"


@pytest.fixture(scope="module")
def ray_module(ray_runtime):
    """The session's Ray runtime; its workers' environment holds the canary secrets."""
    return ray_runtime


def kill_sandboxes(ray, base):
    from actors.sandbox import sandbox_actors

    for handle in sandbox_actors(base).values():
        ray.kill(handle)


@pytest.fixture(scope="module")
def actor_client(ray_module):
    from actors.sandbox import SandboxActorClient

    base = f"test-sandbox-{os.getpid()}"
    yield SandboxActorClient(Settings(_env_file=None), name=base)
    kill_sandboxes(ray_module, base)


@pytest.fixture
def own_base(ray_module, request):
    """A base name for one test's actors, killed afterwards."""
    base = f"test-sandbox-{os.getpid()}-{request.node.name[5:30].replace('_', '-')}"
    yield base
    kill_sandboxes(ray_module, base)


def unknown_node(alive=True):
    """A node as `ray.nodes()` lists it, with an id no Ray node has: its actor can never start."""
    return {"NodeID": secrets.token_hex(28), "Alive": alive, "Resources": {"CPU": 1.0}}


async def the_actor(client):
    actors = await client.actors()
    assert len(actors) == 1  # the session's Ray has one node
    return next(iter(actors.values()))


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
    pid = await (await the_actor(actor_client)).server_pid.remote()
    from services.sandbox.client import sandbox_environment

    environ = psutil.Process(pid).environ()
    assert CANARY not in repr(environ) and set(environ) <= set(sandbox_environment())


async def test_cancelling_the_caller_kills_the_child(actor_client):
    server = psutil.Process(await (await the_actor(actor_client)).server_pid.remote())
    task = asyncio.create_task(
        actor_client.run("while True:\n    pass", {}, memory_mb=100, cpu_seconds=30, timeout=30, label="flow-2/busy")
    )
    children = await wait_for_busy_runs(server.pid)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_gone(children, timeout=10)


async def test_fifty_concurrent_runs(actor_client):
    results = await asyncio.gather(*(actor_client.run(ECHO, {"n": n}, **LIMITS) for n in range(50)))
    assert [r["outputs"]["n"] for r in results] == list(range(50))


async def test_one_actor_per_node_named_after_it_pinned_to_it_and_shared_by_clients(ray_module, actor_client):
    from actors.sandbox import SandboxActorClient, sandbox_actors
    from actors.sandbox_nodes import sandbox_actor_name

    node = ray_module.get_runtime_context().get_node_id()
    handle = await the_actor(actor_client)
    assert await handle.ready.remote() == node
    base = f"test-sandbox-{os.getpid()}"
    assert set(sandbox_actors(base)) == {sandbox_actor_name(base, node)} == {f"{base}-{node[:12]}"}
    other = SandboxActorClient(Settings(_env_file=None), name=base)  # another coordinator's client
    assert (await other.actors())[node]._actor_id == handle._actor_id
    before = (await handle.stats.remote())["runs"]
    await other.run(ECHO, {"n": 1}, **LIMITS)
    assert (await handle.stats.remote())["runs"] == before + 1


async def test_no_eligible_node_is_a_clear_transient_error(ray_module, own_base):
    from actors.sandbox import SandboxActorClient, sandbox_actors

    client = SandboxActorClient(Settings(_env_file=None, sandbox_resource="gpu-sandbox"), name=own_base)
    with pytest.raises(ElementError) as raised:
        await client.run(ECHO, {"n": 1}, **LIMITS)
    assert raised.value.error_type == "sandbox_unavailable" and raised.value.transient
    assert "gpu-sandbox" in str(raised.value) and "SANDBOX_RESOURCE" in str(raised.value)
    with pytest.raises(ElementError, match="gpu-sandbox"):
        await client.isolation()
    assert sandbox_actors(own_base) == {}  # nothing was started anywhere


async def test_a_node_whose_actor_cannot_start_is_passed_over_before_the_code_starts(ray_module, own_base, caplog):
    from actors.sandbox import SandboxActorClient

    caplog.set_level(logging.WARNING, logger="actors.sandbox")
    real = [node for node in ray_module.nodes() if node["Alive"]]
    listing = [*real, unknown_node()]
    client = SandboxActorClient(Settings(_env_file=None), name=own_base, list_nodes=lambda: listing)
    results = [await client.run(ECHO, {"n": n}, **LIMITS) for n in range(4)]
    assert [r["outputs"]["n"] for r in results] == list(range(4))
    passed_over = [r for r in caplog.records if "did not start" in r.getMessage()]
    assert len(passed_over) == 1, passed_over  # tried once, then passed over while the real node takes runs
    actor = (await client.actors())[real[0]["NodeID"]]
    assert (await actor.stats.remote())["runs"] == 4  # every run ran once, on the node that could take it


async def test_a_dead_node_is_dropped_and_no_node_left_is_a_clear_error(ray_module, own_base):
    from actors.sandbox import SandboxActorClient

    ghost = unknown_node()
    listing = [ghost]
    client = SandboxActorClient(Settings(_env_file=None), name=own_base, list_nodes=lambda: listing)
    with pytest.raises(ElementError) as raised:
        await client.run(ECHO, {"n": 1}, **LIMITS)
    assert raised.value.error_type == "sandbox_unavailable" and raised.value.transient
    assert ghost["NodeID"][:12] in str(raised.value) and "no other node" in str(raised.value)
    listing[:] = [
        dict(ghost, Alive=False),
        *(n for n in ray_module.nodes() if n["Alive"]),
    ]  # read at once after the error
    assert (await client.run(ECHO, {"n": 2}, **LIMITS))["outputs"] == {"n": 2}
    assert ghost["NodeID"] not in await client.actors()


async def test_an_actor_dying_mid_run_fails_the_run_and_does_not_run_it_again(ray_module, own_base, caplog):
    """Its node is still there, so the run may be what killed it: never re-run silently."""
    from actors.sandbox import SandboxActorClient

    caplog.set_level(logging.WARNING, logger="actors.sandbox")
    client = SandboxActorClient(Settings(_env_file=None), name=own_base)
    actor = await the_actor(client)
    server = psutil.Process(await actor.server_pid.remote())
    task = asyncio.create_task(
        client.run("while True:\n    pass", {}, memory_mb=100, cpu_seconds=20, timeout=20, label="flow-3/busy")
    )
    children = await wait_for_busy_runs(server.pid)
    ray_module.kill(actor, no_restart=False)
    with pytest.raises(ElementError) as raised:
        await asyncio.wait_for(task, 15)  # a silent re-run would end in `timeout` only after 20 s
    assert raised.value.error_type == "sandbox_unavailable" and raised.value.transient
    assert "the sandbox actor is unavailable" in str(raised.value) and not caplog.records  # not moved elsewhere
    for child in children:  # the fork server went with its actor; the run lives on to its own CPU limit
        child.kill()
    assert (await client.run(ECHO, {"n": 3}, **LIMITS))["outputs"] == {"n": 3}  # the restarted actor, probed
    assert (await (await the_actor(client)).stats.remote())["runs"] == 1  # the restarted actor ran only that one


# -- pure logic: which nodes, which node takes the next run --------------------------------------


def node_entry(node_id, alive=True, **resources):
    return {"NodeID": node_id, "Alive": alive, "Resources": {"CPU": 2.0, **resources}}


def test_nodes_without_the_resource_are_excluded():
    from actors.sandbox_nodes import eligible_nodes

    nodes = [node_entry("c"), node_entry("b", sandbox=100.0), node_entry("a", sandbox=1.0), node_entry("d", sandbox=0)]
    assert eligible_nodes(nodes, "sandbox") == ["a", "b"]
    assert eligible_nodes(nodes, "") == ["a", "b", "c", "d"]  # no resource configured: every alive node
    assert eligible_nodes(nodes, "gpu") == []


def test_balancing_spreads_runs_over_the_nodes():
    from actors.sandbox_nodes import SandboxNodes

    nodes = SandboxNodes(turn=0)
    nodes.update(["a", "b", "c"], now=0.0)
    one_at_a_time = []
    for _ in range(6):  # each run done before the next: taken in turn
        node = nodes.choose(0.0)
        nodes.started(node)
        nodes.finished(node)
        one_at_a_time.append(node)
    assert sorted(one_at_a_time) == ["a", "a", "b", "b", "c", "c"]
    at_once = []
    for _ in range(7):  # all in flight together: the fewest in flight first
        node = nodes.choose(0.0)
        nodes.started(node)
        at_once.append(node)
    assert sorted(at_once.count(node) for node in "abc") == [2, 2, 3]
    nodes.finished("a")
    nodes.finished("a")  # a now has the fewest runs in flight, whatever the turn
    assert nodes.choose(0.0) == "a"


def test_several_clients_do_not_all_start_on_the_same_node():
    from actors.sandbox_nodes import SandboxNodes

    firsts = set()
    for _ in range(50):
        nodes = SandboxNodes()
        nodes.update(["a", "b"], now=0.0)
        firsts.add(nodes.choose(0.0))
    assert firsts == {"a", "b"}


def test_a_dead_node_is_dropped_at_the_next_read():
    from actors.sandbox_nodes import REFRESH_SECONDS, SandboxNodes, eligible_nodes

    nodes = SandboxNodes(turn=0)
    assert nodes.refresh_due(0.0)  # never read
    nodes.update(eligible_nodes([node_entry("a"), node_entry("b")], ""), now=0.0)
    assert not nodes.refresh_due(REFRESH_SECONDS / 2)
    assert nodes.refresh_due(REFRESH_SECONDS)  # a node added since then gets runs after this read
    nodes.started("b")
    dropped = nodes.update(eligible_nodes([node_entry("a"), node_entry("b", alive=False)], ""), now=REFRESH_SECONDS)
    assert dropped == ["b"]
    nodes.finished("b")  # a run in flight there when it went finishes without trouble
    assert nodes.in_flight == {} and {nodes.choose(REFRESH_SECONDS) for _ in range(4)} == {"a"}


def test_a_failed_node_is_passed_over_while_another_can_take_runs():
    from actors.sandbox_nodes import SandboxNodes

    nodes = SandboxNodes(refresh_seconds=3.0, turn=0)
    nodes.update(["a", "b"], now=0.0)
    nodes.failed("a", now=10.0)
    assert nodes.refresh_due(10.0)  # read the nodes again at once
    nodes.update(["a", "b"], now=10.0)  # still listed: its actor died, not its node
    assert {nodes.choose(11.0) for _ in range(4)} == {"b"}
    assert nodes.choose(11.0, exclude=["b"]) == "a"  # the only node left still takes runs
    assert {nodes.choose(13.0) for _ in range(4)} == {"a", "b"}  # passed over for refresh_seconds only


def test_no_eligible_node_is_no_choice_and_the_message_names_the_resource():
    from actors.sandbox_nodes import SandboxNodes, no_node_message

    nodes = SandboxNodes()
    nodes.update([], now=0.0)
    assert nodes.choose(0.0) is None
    nodes.update(["a"], now=1.0)
    assert nodes.choose(1.0, exclude=["a"]) is None
    assert "'sandbox'" in no_node_message("sandbox") and "SANDBOX_RESOURCE" in no_node_message("sandbox")
    assert "no alive Ray node" in no_node_message("")


def test_sandbox_actor_names():
    from actors.sandbox_nodes import is_sandbox_actor_name, sandbox_actor_name

    node = "0123456789abcdef" * 3 + "01234567"
    assert sandbox_actor_name("custom-code-sandbox", node) == "custom-code-sandbox-0123456789ab"
    assert is_sandbox_actor_name("custom-code-sandbox", sandbox_actor_name("custom-code-sandbox", node))
    assert not is_sandbox_actor_name("test", sandbox_actor_name("test-mine", node))  # another base's actor
    assert not is_sandbox_actor_name("custom-code-sandbox", "custom-code-sandbox")  # the single actor of old


def test_the_weakest_isolation_level_is_reported():
    from actors.sandbox_nodes import weakest_isolation

    assert weakest_isolation(["namespaces+seccomp", "namespaces+seccomp"]) == "namespaces+seccomp"
    assert weakest_isolation(["namespaces+seccomp", "landlock+seccomp"]) == "landlock+seccomp"
    assert weakest_isolation(["restricted-python-only", "landlock+seccomp", "none"]) == "none"
    assert weakest_isolation(["namespaces+seccomp", None]) is None  # one unknown: unknown
    assert weakest_isolation([]) is None


def test_the_actor_options_pin_it_to_its_node_and_the_sandbox_resource_is_configurable():
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.sandbox import actor_options

    node = "ab" * 28
    options = actor_options(Settings(_env_file=None), node)
    assert "resources" not in options and options["name"] == f"custom-code-sandbox-{node[:12]}"
    strategy = options["scheduling_strategy"]
    assert isinstance(strategy, NodeAffinitySchedulingStrategy) and strategy.node_id == node and not strategy.soft
    options = actor_options(Settings(_env_file=None, sandbox_resource="sandbox"), node)
    assert set(options["resources"]) == {"sandbox"} and options["num_cpus"] == 0
    assert options["max_concurrency"] >= 1000 and options["lifetime"] == "detached" and options["max_restarts"] == -1
    assert options["get_if_exists"] is True
