"""Run by tests/e2e/test_multinode.py in a process of its own: a 3-node Ray cluster on this machine
(head + worker + sandbox worker with the `sandbox` resource), the service deployed on it, one
flow with custom_code posted over HTTP, events received by a websockets Backend 2.
Prints one JSON line with what it saw."""

import json
import os
import sys
import time

import httpx

os.environ["SANDBOX_RESOURCE"] = "sandbox"
os.environ["LOG_LEVEL"] = "WARNING"


def main() -> int:
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    from tests.fakes.backend2 import FakeBackend2
    from tests.fixtures.service import free_port

    backend2 = FakeBackend2().start()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    sandbox_node = cluster.add_node(num_cpus=1, resources={"sandbox": 100})
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        import serve_app

        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(serve_app.app, name="flow-executor", route_prefix="/")
        flow_id = "multinode-1"
        body = {
            "flow_id": flow_id,
            "flow_definition": {
                "flow_id": flow_id,
                "elements": {
                    "s": {"type": "start", "element_id": "s"},
                    "c": {
                        "type": "custom_code",
                        "element_id": "c",
                        "code": "def main(i):\n    return {'y': i['x'] * 3}",
                    },
                    "e": {"type": "end", "element_id": "e"},
                },
                "connections": [{"from_id": "s", "to_id": "c"}, {"from_id": "c", "to_id": "e"}],
                "start_element_id": "s",
            },
            "initial_inputs": {"x": 14},
            "backend2_ws_url": backend2.url(f"ws/{flow_id}"),
        }
        status = httpx.post(f"http://127.0.0.1:{port}/execute", json=body, timeout=60).status_code
        events = backend2.wait_for_completion(f"ws/{flow_id}", timeout=120)
        from ray._private.state import actors

        from actors.names import NAMESPACE
        from actors.sandbox import SANDBOX_NAME

        sandbox = ray.get_actor(SANDBOX_NAME, namespace=NAMESPACE)
        sandbox_on = actors(sandbox._actor_id.hex())["Address"]["NodeID"]
        print(
            json.dumps(
                {
                    "status": status,
                    "outputs": events[-1]["data"]["outputs"],
                    "seqs": [e["seq"] for e in events],
                    "nodes": len(ray.nodes()),
                    "sandbox_on_sandbox_node": sandbox_on == sandbox_node.node_id,
                }
            )
        )
        return 0
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
        backend2.shutdown()


if __name__ == "__main__":
    t0 = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    sys.exit(code)
