"""Names and options of the long-lived actors, which coordinator owns a flow, and the pool's size.

Contract: actors live in the `flow-executor` namespace under readable names (the dashboard
shows `flow-coordinator-0` and its streamer `backend2-streamer-0`, `custom-code-sandbox-<node>`, …), created with
`ACTOR_OPTIONS`: looked up if they exist, detached, restarted when they crash, never retried
task by task, highly concurrent, holding no CPU (a spread one a trace). A flow id falls to coordinator
`crc32(flow_id) % count` (`coordinator_index`), so every replica of the ingress sends a new flow
the same way; the run then belongs to the coordinator the run store names, also after the pool
is resized (`actors.directory`). The coordinator of index i publishes its flows' events through
streamer i only, so one flow's events go out over one WebSocket in seq order and no streamer
carries the whole cluster.
`named_actor_options(name, resource, strategy)` are a long-lived actor's options (`on_node`
pins one to a node; one placed by `SPREAD` holds `SPREAD_CPUS`, so that Ray really spreads it): with `COORDINATOR_RESOURCE` set, coordinators and streamers require that
custom resource (a cluster keeps them, and the secrets
they hold, off the nodes that run user code). `pool_size(setting, cluster_cpus)` is how many coordinators a new pool gets (`COORDINATOR_COUNT`,
or `auto`: one per two CPUs of the cluster, at least 2, at most 64). This module creates
nothing (see `actors.directory`) and imports no other actor module.
"""

from __future__ import annotations

import zlib
from typing import Any, Literal

from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

NAMESPACE = "flow-executor"
SANDBOX_NAME = "custom-code-sandbox"
MAX_POOL = 64
# What an actor placed by `SPREAD` holds of a CPU: Ray 2.60 spreads an actor that asks for no
# resource as it likes (3 coordinators landed on 2 of 3 nodes in 3 of 4 tries, measured), one that
# asks for any spreads it round the nodes (3 of 3, 4 of 4 tries).
SPREAD_CPUS = 0.001
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


def streamer_name(index: int) -> str:
    """The streamer of coordinator `index` (it delivers that coordinator's flows only)."""
    return f"backend2-streamer-{index}"


def named_actor_options(name: str, resource: str = "", strategy: Any = None) -> dict[str, Any]:
    """Options of the long-lived actor `name` (`ACTOR_OPTIONS`), requiring 0.01 of the custom
    resource `resource` when set and placed by the scheduling strategy `strategy` when given."""
    options: dict[str, Any] = {"name": name, **ACTOR_OPTIONS}
    if resource:
        options["resources"] = {resource: 0.01}
    if strategy is not None:
        options["scheduling_strategy"] = strategy
    if strategy == "SPREAD":
        options["num_cpus"] = SPREAD_CPUS
    return options


def on_node(node_id: str) -> NodeAffinitySchedulingStrategy:
    """On that node and only there: an actor pinned so dies with its node (Ray 2.60 places a
    zero-CPU actor anywhere under a soft affinity, so it is hard)."""
    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def coordinator_index(flow_id: str, count: int) -> int:
    return zlib.crc32(flow_id.encode("utf-8", "surrogatepass")) % count


def pool_size(setting: int | Literal["auto"], cluster_cpus: float) -> int:
    """Coordinators of a new pool: the setting, or for `auto` one per two CPUs (2 to 64).

    A coordinator and its streamer each use up to one core when busy; the rest of a node's
    CPUs go to the ingress, Ray and the elements' own work."""
    if setting != "auto":
        return setting
    return max(2, min(MAX_POOL, int(cluster_cpus // 2)))
