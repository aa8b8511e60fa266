"""Creation of the pool of coordinators (each coordinator creates its own streamer).

Contract: `ensure_coordinators(setting)` creates the missing coordinators under their names
(`actors.names`; idempotent: `get_if_exists`), detached and restartable, spread over the
cluster's nodes (`SPREAD`; only over nodes offering `COORDINATOR_RESOURCE` when it is set), and returns their handles in index order. The pool's size is
coordinator 0's (the size it was created with, or set since), read back by every ingress
replica. A coordinator places its streamer on its own node when it can (`actors.coordinator`).

`follow_pool(pool, desired, span, resource)` resizes a live pool (the ingress calls it at each
health check with `pool_size` of the setting and the cluster's CPUs of now): coordinator 0
takes the new size, the missing coordinators are created, and every coordinator — those of
index `desired` up to `span` too, which leave the pool — is told the size
(`FlowCoordinator.set_pool_size`). No flow is lost: a run stays with the coordinator the store
names until it ends, and every call about it is forwarded there; a coordinator leaving the pool
finishes its runs and deliveries, hands its paused runs over, then exits. Runs created while
replicas still route by the old size go where those replicas send them (the store refuses an id
twice). A pool on the `memory` store (one store per coordinator) is never resized.

The pool's actors share one run store: `store_problem(kind, hosts)` refuses an embedded store
(SQLite is a file of one machine, `memory` is per process) on a cluster whose nodes are on more
than one host — the service then does not start, with a message saying to set `RUN_STORE_URL`,
instead of running with a store per machine. Nodes of one machine (ray.cluster_utils) share it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import ray

from actors.coordinator import FlowCoordinator
from actors.names import coordinator_name, named_actor_options, pool_size
from actors.peers import existing_coordinator
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
    count: int = ray.get(first.pool_size.remote())  # coordinator 0 holds the size (`follow_pool` changes it)
    return [first, *(_coordinator(i, count, resource) for i in range(1, count))]


async def follow_pool(pool: list[Any], desired: int, span: int, resource: str = "") -> tuple[list[Any], int]:
    """The pool, resized to `desired` coordinators when it has another size (see the module's
    contract), and the span to pass next time. Coordinators of index `desired` up to `span`
    that still exist are told they are out (again and again until they are gone: one restarted
    meanwhile does not know)."""
    first = pool[0]
    known: int = await first.pool_size.remote()
    if known != desired:
        await first.set_pool_size.remote(desired)
    if known != desired or len(pool) != desired:
        pool = [first, *(_coordinator(i, desired, resource) for i in range(1, desired))]
        await asyncio.gather(*(c.set_pool_size.remote(desired) for c in pool[1:]))
    found = await asyncio.gather(
        *(asyncio.to_thread(existing_coordinator, i) for i in range(desired, max(span, known)))
    )
    leaving = {desired + i: c for i, c in enumerate(found) if c is not None}
    await asyncio.gather(*(c.set_pool_size.remote(desired) for c in leaving.values()))
    return pool, max(leaving, default=desired - 1) + 1
