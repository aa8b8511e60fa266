"""Run by tests/e2e/test_node_failure.py in a process of its own: a 3-node Ray cluster on this
machine (ray.cluster_utils.Cluster: a head and two workers, one CPU each), the service deployed
on it with the embedded SQLite store (one file: every "node" is on this machine), an LLM flow
streaming from the fake Bedrock to a websockets Backend 2 — and the worker node that runs the
flow's coordinator and its streamer killed (not drained) while the tokens stream.

Prints one JSON line with what it saw: where the pool's actors were, what Backend 2 got, how the
run ended and where its coordinator runs afterwards.
"""

import json
import time
import uuid

import httpx

from tests.e2e.cluster_checks import exit_with

CHUNKS = 80
DELAY = 0.05  # s between tokens: the LLM element streams for ~4 s


def node_of(actor_name: str) -> str:
    import ray
    from ray._private.state import actors

    from actors.names import NAMESPACE

    actor = ray.get_actor(actor_name, namespace=NAMESPACE)
    return str(actors(actor._actor_id.hex())["Address"]["NodeID"])


def flow_body(flow_id: str, backend2_url: str) -> dict:
    from pathlib import Path

    body = json.loads((Path(__file__).resolve().parents[2] / "examples" / "seed_llm.json").read_text())
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2_url
    body["config"]["max_execution_time"] = 300
    return body


def flow_id_for(index: int, count: int) -> str:
    from actors.names import coordinator_index

    while coordinator_index(flow_id := f"node-failure-{uuid.uuid4().hex[:8]}", count) != index:
        pass
    return flow_id


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = predicate()
        except Exception:  # the service is moving off the dead node: ask again
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def main() -> int:
    from ray.cluster_utils import Cluster

    from actors.names import coordinator_name, streamer_name
    from tests.e2e.cluster_checks import serving, start_fakes

    bedrock, backend2 = start_fakes("3", "node-failure-store-")
    fast_failure_detection = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False, "_system_config": fast_failure_detection},
    )
    workers = {cluster.add_node(num_cpus=1).node_id: None for _ in range(2)}
    nodes = {node.node_id: node for node in cluster.worker_nodes}
    head_id = cluster.head_node.node_id
    try:
        with serving(cluster) as port:
            base = f"http://127.0.0.1:{port}"
            count = 3
            placed = {i: (node_of(coordinator_name(i)), node_of(streamer_name(i))) for i in range(count)}
            node_count = len(cluster.worker_nodes) + 1
            # a coordinator on a worker with its streamer beside it (one restarted while the box is
            # loaded may have moved away from its streamer: Ray does not move the streamer with it)
            pairs = [i for i, (c, s) in placed.items() if c in workers and c == s]
            assert pairs, f"no coordinator on a worker node with its streamer beside it: {placed}"
            victim_index = pairs[0]
            victim_node = placed[victim_index][0]
            flow_id = flow_id_for(victim_index, count)
            path = f"ws/{flow_id}"
            bedrock.script_text([f"tok{i} " for i in range(CHUNKS)], delay=DELAY)
            status = httpx.post(f"{base}/execute", json=flow_body(flow_id, backend2.url(path)), timeout=60).status_code
            backend2.wait_for(path, lambda ev: sum(e["type"] == "llm_chunk" for e in ev) >= 10, 60)
            cluster.remove_node(nodes[victim_node], allow_graceful=False)  # the process tree dies at once
            removed_at = time.monotonic()
            events = backend2.wait_for_completion(path, timeout=240)
            recovered_s = time.monotonic() - removed_at
            snapshot = wait_until(
                lambda: (r := httpx.get(f"{base}/flows/{flow_id}", timeout=10)).status_code == 200 and r.json(),
                120,
                "the run's status",
            )
            by_seq = {e["seq"]: e for e in events}
            print(
                json.dumps(
                    {
                        "status": status,
                        "nodes": node_count,
                        "placed": placed,
                        "coordinator_nodes": sorted({c for c, _s in placed.values()}),
                        "head": head_id,
                        "colocated": sum(c == s for c, s in placed.values()),
                        "victim_was_worker": victim_node in workers and victim_node != head_id,
                        "coordinator_after": node_of(coordinator_name(victim_index)),
                        "streamer_after": node_of(streamer_name(victim_index)),
                        "victim_node": victim_node,
                        "seqs": sorted(by_seq),
                        "last": by_seq[max(by_seq)],
                        "chunks": [
                            e["data"].get("chunk") for _s, e in sorted(by_seq.items()) if e["type"] == "llm_chunk"
                        ],
                        "resumed": [e["data"].get("resumed", False) for e in events if e["type"] == "element_started"],
                        "run_status": snapshot["status"],
                        "recovered_s": round(recovered_s, 1),
                    }
                )
            )
            return 0
    finally:
        backend2.shutdown()
        bedrock.stop()


if __name__ == "__main__":
    exit_with(main)
