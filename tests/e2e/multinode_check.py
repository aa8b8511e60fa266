"""Run by tests/e2e/test_multinode.py in a process of its own: a 4-node Ray cluster on this machine
(head + worker + two sandbox workers with the `sandbox` resource), the service deployed on it, one
flow with four custom_code elements posted over HTTP, events received by a websockets Backend 2;
then, with a client of its own, a run whose sandbox node leaves the cluster mid-run.
Prints one JSON line with what it saw."""

import asyncio
import json
import os
import time

import httpx

from tests.e2e.cluster_checks import exit_with

os.environ["SANDBOX_RESOURCE"] = "sandbox"
os.environ["LOG_LEVEL"] = "WARNING"

ADD_7 = "def main(i):\n    return {'x': i['x'] + 7}"
BUSY = "def main(i):\n    n = 0\n    for k in range(i['k']):\n        n += 1\n    return {'n': n}"


def custom_code_flow(flow_id, backend2):
    """start → c1 → c2 → c3 → c4 → end, each adding 7 to x."""
    codes = [f"c{i}" for i in range(1, 5)]
    elements = {"s": {"type": "start", "element_id": "s"}, "e": {"type": "end", "element_id": "e"}}
    elements.update({c: {"type": "custom_code", "element_id": c, "code": ADD_7} for c in codes})
    chain = ["s", *codes, "e"]
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": elements,
            "connections": [{"from_id": a, "to_id": b} for a, b in zip(chain, chain[1:], strict=False)],
            "start_element_id": "s",
        },
        "initial_inputs": {"x": 14},
        "backend2_ws_url": backend2.url(f"ws/{flow_id}"),
    }


def runs_by_node(base, roles):
    """{role of the node: runs} of every sandbox actor of `base`, and the roles of their nodes."""
    import ray

    from actors.sandbox import sandbox_actors

    stats = [ray.get(handle.stats.remote()) for handle in sandbox_actors(base).values()]
    return {roles.get(s["node_id"], "unknown"): s["runs"] for s in stats}


def wait_for_isolation(port, timeout=60):
    """GET /health until it reports the sandboxes' isolation level (asked in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        if health["custom_code_isolation"] != "unknown" or time.monotonic() > deadline:
            return health
        time.sleep(0.5)


async def move_a_run(cluster, sandbox_nodes, roles):
    """A long run; its node is removed while it runs: the run's result comes from the other node."""
    from actors.sandbox import SandboxActorClient
    from engine.settings import Settings

    client = SandboxActorClient(Settings(_env_file=None, sandbox_resource="sandbox"), name="multinode-move")
    limits = {"memory_mb": 100, "cpu_seconds": 60, "timeout": 120}
    for k in (1, 2):  # both actors started and probed
        await client.run(BUSY, {"k": k}, **limits)
    run = asyncio.create_task(client.run(BUSY, {"k": 20_000_000}, **limits))
    while not client._nodes.in_flight:
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the code is running
    (node_id,) = client._nodes.in_flight
    cluster.remove_node(next(n for n in sandbox_nodes if n.node_id == node_id))
    outputs = (await run)["outputs"]
    return {"outputs": outputs, "removed": roles[node_id], "runs": runs_by_node("multinode-move", roles)}


def main() -> int:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from tests.e2e.cluster_checks import serving
    from tests.fakes.backend2 import FakeBackend2

    backend2 = FakeBackend2().start()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    sandbox_nodes = [cluster.add_node(num_cpus=1, resources={"sandbox": 100}) for _ in range(2)]
    roles = {cluster.head_node.node_id: "head", worker.node_id: "worker"}
    roles.update({node.node_id: f"sandbox-{i}" for i, node in enumerate(sandbox_nodes)})
    try:
        with serving(cluster) as port:
            flow_id = "multinode-1"
            body = custom_code_flow(flow_id, backend2)
            status = httpx.post(f"http://127.0.0.1:{port}/execute", json=body, timeout=60).status_code
            events = backend2.wait_for_completion(f"ws/{flow_id}", timeout=120)
            health = wait_for_isolation(port)
            from actors.names import SANDBOX_NAME

            service_runs = runs_by_node(SANDBOX_NAME, roles)
            serve.shutdown()
            t0 = time.monotonic()
            moved = asyncio.run(move_a_run(cluster, sandbox_nodes, roles))
            moved["seconds"] = round(time.monotonic() - t0, 1)
            print(
                json.dumps(
                    {
                        "status": status,
                        "outputs": events[-1]["data"]["outputs"],
                        "seqs": [e["seq"] for e in events],
                        "nodes": len(ray.nodes()),
                        "health": health,
                        "service_runs": service_runs,
                        "moved": moved,
                    }
                )
            )
            return 0
    finally:
        backend2.shutdown()


if __name__ == "__main__":
    exit_with(main)
