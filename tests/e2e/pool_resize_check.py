"""Run by tests/e2e/test_pool_resize.py in a process of its own: the coordinator pool resized
under live flows, on a Ray cluster of this machine (ray.cluster_utils.Cluster) with the service
deployed on the embedded SQLite store and `COORDINATOR_COUNT=auto`.

- Grow with the cluster: a head and a worker of 2 CPUs each give 2 coordinators; while an LLM
  flow of coordinator 1 streams, a third node of 2 CPUs joins and the ingress (at a health check)
  grows the pool to 3. The flow's id now falls to coordinator 2: its status and delivery state
  are still read and it is cancelled (the calls are forwarded to coordinator 1, which runs it).
- Shrink by the operator: with an LLM flow streaming and a flow paused on coordinator 2, the
  service is deployed again with `COORDINATOR_COUNT=2`: coordinator 2 finishes its flow, lets
  its streamer deliver everything, hands the paused run to its heir and exits with its streamer;
  the paused run is resumed through the service and completes.

Prints one JSON line with what it saw.
"""

import json
import time
import uuid

import httpx

from tests.e2e.cluster_checks import exit_with
from tests.e2e.node_failure_check import flow_body, wait_until

DELAY = 0.1  # s between tokens
LONG = 3000  # tokens of the flow streaming while the pool grows (~5 min: it is cancelled first)
SHORT = 60  # tokens of the flow streaming while the pool shrinks (~6 s)


def flow_id_at(*places: tuple[int, int]) -> str:
    """A flow id that falls to coordinator `index` of a pool of `count`, for each `(count, index)`."""
    from actors.names import coordinator_index

    while True:
        flow_id = f"resize-{uuid.uuid4().hex[:8]}"
        if all(coordinator_index(flow_id, count) == index for count, index in places):
            return flow_id


def exists(name: str) -> bool:
    import ray

    from actors.names import NAMESPACE

    try:
        ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return False
    return True


def paused_body(flow_id: str, backend2_url: str) -> dict:
    from tests.actors.test_coordinator_pause import waiting_flow

    body = waiting_flow(flow_id)
    body["backend2_ws_url"] = backend2_url
    return body


def seqs_and_end(events: list[dict]) -> dict:
    """How many events Backend 2 got, whether their seqs are 1…n without a gap, how the flow ended."""
    seqs = sorted({e["seq"] for e in events})
    last = max(events, key=lambda e: e["seq"])
    return {"events": len(seqs), "contiguous": seqs == list(range(1, len(seqs) + 1)), "end": last["data"].get("status")}


def main() -> int:
    from ray import serve
    from ray.cluster_utils import Cluster

    import serve_app
    from actors.names import coordinator_name, streamer_name
    from tests.e2e.cluster_checks import serving, start_fakes

    bedrock, backend2 = start_fakes("auto", "pool-resize-store-")
    bedrock.script_text([f"tok{i} " for i in range(LONG)], delay=DELAY)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    seen: dict = {}
    with serving(cluster) as port:
        base = f"http://127.0.0.1:{port}"
        seen["pool_before"] = [exists(coordinator_name(i)) for i in range(3)]
        seen["health_before"] = httpx.get(f"{base}/health", timeout=10).json()["coordinators"]

        # grow: a node joins while a flow of coordinator 1 streams
        grown = flow_id_at((2, 1), (3, 2))
        seen["grow_post"] = httpx.post(
            f"{base}/execute", json=flow_body(grown, backend2.url(f"ws/{grown}")), timeout=60
        ).status_code
        backend2.wait_for(f"ws/{grown}", lambda ev: sum(e["type"] == "llm_chunk" for e in ev) >= 5, 60)
        cluster.add_node(num_cpus=2)
        started = time.monotonic()
        wait_until(lambda: httpx.get(f"{base}/health", timeout=10).json()["coordinators"] == 3, 90, "a pool of 3")
        seen["grew_after_s"] = round(time.monotonic() - started, 1)
        asked = httpx.get(f"{base}/flows/{grown}", timeout=30)
        delivery = asked.json().get("delivery") or {}  # streamer 1's: coordinator 2 forwarded the calls
        seen["grown_read"] = [asked.status_code, asked.json().get("status"), delivery.get("last_seq", 0) > 0]
        seen["grown_cancel"] = httpx.post(f"{base}/flows/{grown}/cancel", timeout=30).status_code  # forwarded too
        seen["grown"] = seqs_and_end(backend2.wait_for_completion(f"ws/{grown}", timeout=120))

        # shrink: the operator deploys again with two coordinators
        bedrock.script_text([f"tok{i} " for i in range(SHORT)], delay=DELAY)
        streaming = flow_id_at((3, 2))
        waiting = flow_id_at((3, 2))
        seen["pause_post"] = httpx.post(
            f"{base}/execute", json=paused_body(waiting, backend2.url(f"ws/{waiting}")), timeout=60
        ).status_code
        backend2.wait_for(f"ws/{waiting}", lambda ev: any(e["type"] == "flow_paused" for e in ev), 60)
        seen["shrink_post"] = httpx.post(
            f"{base}/execute", json=flow_body(streaming, backend2.url(f"ws/{streaming}")), timeout=60
        ).status_code
        backend2.wait_for(f"ws/{streaming}", lambda ev: sum(e["type"] == "llm_chunk" for e in ev) >= 5, 60)
        env = {**serve_app.INGRESS_ENV, "COORDINATOR_COUNT": "2"}
        again = serve_app.FlowExecutorIngress.options(
            ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}}
        )
        started = time.monotonic()
        serve.run(again.bind(), name="flow-executor", route_prefix="/")
        seen["streaming"] = seqs_and_end(backend2.wait_for_completion(f"ws/{streaming}", timeout=120))
        wait_until(
            lambda: not exists(coordinator_name(2)) and not exists(streamer_name(2)), 180, "coordinator 2 to leave"
        )
        seen["left_after_s"] = round(time.monotonic() - started, 1)
        resumed = httpx.post(
            f"{base}/flows/{waiting}/resume", json={"element_id": "w", "inputs": {"signature": "0xab"}}, timeout=60
        )
        seen["resume"] = resumed.status_code
        seen["waiting"] = seqs_and_end(backend2.wait_for_completion(f"ws/{waiting}", timeout=120))
        seen["pool_after"] = [exists(coordinator_name(i)) for i in range(3)]
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    exit_with(main)
