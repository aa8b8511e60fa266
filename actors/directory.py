"""Creation of the pool of coordinators (each coordinator creates its own streamer).

Contract: `ensure_coordinators(setting)` creates the missing coordinators under their names
(`actors.names`; idempotent: `get_if_exists`), detached and restartable, spread over the
cluster's nodes (`SPREAD`; only over nodes offering `COORDINATOR_RESOURCE` when it is set), and returns their handles in index order. The pool's size is fixed
by whoever creates coordinator 0 (`pool_size` of the setting and the cluster's CPUs at that
moment) and read back from it, so every ingress replica — also one started after nodes joined
— routes flows over the same pool. A coordinator places its streamer on its own node when it
can (`actors.coordinator`).

The pool's actors share one run store: `store_problem(kind, hosts)` refuses an embedded store
(SQLite is a file of one machine, `memory` is per process) on a cluster whose nodes are on more
than one host — the service then does not start, with a message saying to set `RUN_STORE_URL`,
instead of running with a store per machine. Nodes of one machine (ray.cluster_utils) share it.
"""

from __future__ import annotations

from typing import Any, Literal

import ray

from actors.coordinator import FlowCoordinator
from actors.names import coordinator_name, named_actor_options, pool_size
from actors.ray_types import remote_view


def _coordinator(index: int, count: int, resource: str) -> Any:
    options = named_actor_options(coordinator_name(index), resource, "SPREAD")
    return remote_view(FlowCoordinator).options(**options).remote(index, count)


def store_problem(kind: str, hosts: set[str]) -> str | None:
    """Why the pool cannot use a `kind` store on nodes at `hosts`, or None."""
    if kind == "postgres" or len(hosts) <= 1:
        return None
    return (
        f"RUN_STORE={kind} keeps the runs on one machine, but this cluster's nodes are on {len(hosts)} "
        "hosts: set RUN_STORE_URL=postgresql://… so that every node's coordinators and streamers share one store"
    )


def cluster_hosts() -> set[str]:
    """The addresses of the cluster's alive nodes."""
    return {str(node["NodeManagerAddress"]) for node in ray.nodes() if node.get("Alive")}


def ensure_coordinators(setting: int | Literal["auto"], resource: str = "") -> list[Any]:
    """The pool's coordinators, creating those missing (blocks until coordinator 0 answers);
    they require the custom resource `resource` when it is set."""
    first = _coordinator(0, pool_size(setting, ray.cluster_resources().get("CPU", 0.0)), resource)
    count: int = ray.get(first.pool_size.remote())  # the size it was created with wins
    return [first, *(_coordinator(i, count, resource) for i in range(1, count))]
