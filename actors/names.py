"""Names and options of the long-lived actors, and which coordinator owns a flow.

Contract: actors live in the `flow-executor` namespace under readable names (the dashboard
shows `flow-coordinator-0`, `backend2-streamer`, `custom-code-sandbox-<node>`), created with
`ACTOR_OPTIONS`: looked up if they exist, detached, restarted when they crash, never retried
task by task, highly concurrent, holding no CPU. A flow belongs to coordinator
`crc32(flow_id) % count`, so every replica of the ingress routes a flow id the same way. This
module creates nothing (see `actors.directory`) and imports no other actor module.
"""

from __future__ import annotations

import zlib
from typing import Any

import ray

NAMESPACE = "flow-executor"
STREAMER_NAME = "backend2-streamer"
SANDBOX_NAME = "custom-code-sandbox"
ACTOR_OPTIONS: dict[str, Any] = {
    "namespace": NAMESPACE,
    "get_if_exists": True,
    "lifetime": "detached",
    "max_restarts": -1,
    "max_task_retries": 0,
    "max_concurrency": 10_000,
    "num_cpus": 0,
}


def coordinator_name(index: int) -> str:
    return f"flow-coordinator-{index}"


def coordinator_index(flow_id: str, count: int) -> int:
    return zlib.crc32(flow_id.encode("utf-8", "surrogatepass")) % count


def get_streamer() -> Any:
    return ray.get_actor(STREAMER_NAME, namespace=NAMESPACE)
