"""Names and creation of the long-lived actors, and which coordinator owns a flow.

Contract: actors live in the `flow-executor` namespace under readable names (the dashboard
shows `flow-coordinator-0`, `backend2-streamer`, `custom-code-sandbox`). `ensure_actors()`
creates the missing ones (idempotent: `get_if_exists`), detached and restartable, so a
crashed coordinator comes back. A flow belongs to coordinator `crc32(flow_id) % count`, so
every replica of the ingress routes a flow id the same way.
"""

from __future__ import annotations

import zlib
from typing import Any

import ray

NAMESPACE = "flow-executor"
STREAMER_NAME = "backend2-streamer"
_ACTOR_OPTIONS = {
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


def ensure_actors(coordinator_count: int) -> list[Any]:
    """The coordinators, creating them and the streamer when missing."""
    from actors.coordinator import FlowCoordinator
    from actors.streamer import Backend2Streamer

    Backend2Streamer.options(name=STREAMER_NAME, **_ACTOR_OPTIONS).remote()
    return [
        FlowCoordinator.options(name=coordinator_name(i), **_ACTOR_OPTIONS).remote(i, coordinator_count)
        for i in range(coordinator_count)
    ]


def get_streamer() -> Any:
    return ray.get_actor(STREAMER_NAME, namespace=NAMESPACE)
