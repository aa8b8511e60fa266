"""Which nodes host a sandbox actor, and which one takes the next run: pure logic, no Ray.

Contract:
- `eligible_nodes(nodes, resource)`: the ids, sorted, of the alive nodes in `nodes` (entries
  shaped like `ray.nodes()`: `NodeID`, `Alive`, `Resources`) that offer `resource` (any positive
  amount); with `resource` empty, every alive node.
- `sandbox_actor_name(base, node_id)`: the name of the sandbox actor pinned to that node,
  `<base>-<first 12 hex digits of the node id>`: readable in the dashboard, stable for the
  node's lifetime. `is_sandbox_actor_name(base, name)` recognises one.
- `no_node_message(resource)`: what a run says when no node is eligible.
- `SandboxNodes` balances one client's runs over the eligible nodes: `choose(now, exclude)`
  returns the node with the fewest runs in flight from this client (`started` / `finished`
  count them), ties broken round-robin from a starting turn (random by default, so that several
  clients do not all start on the same node), or None when no node is left. A node that
  `failed(node, now)` (an actor error there) is passed over for `refresh_seconds` while another
  node can take the run, and makes the node set due for a read at once. `update(node_ids, now)`
  replaces the node set: a node no longer listed is dropped at once (the runs still in flight
  there finish normally) and returned. `refresh_due(now)`: never read yet, `refresh_seconds`
  elapsed, or a failure since the last read.
- `weakest_isolation(levels)`: the weakest of the isolation levels the node actors reported
  (an unknown level, None or unrecognised, counts as the weakest of all: None is returned).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from services.sandbox.isolation import LANDLOCK, NAMESPACES, NONE, OPT_OUT

REFRESH_SECONDS = 3.0
STRENGTH = {NAMESPACES: 3, LANDLOCK: 2, OPT_OUT: 1, NONE: 0}  # isolation levels, strongest first


def eligible_nodes(nodes: Iterable[Mapping[str, Any]], resource: str) -> list[str]:
    return sorted(
        str(node["NodeID"])
        for node in nodes
        if node.get("Alive") and (not resource or (node.get("Resources") or {}).get(resource, 0) > 0)
    )


def sandbox_actor_name(base: str, node_id: str) -> str:
    return f"{base}-{node_id[:12]}"


def is_sandbox_actor_name(base: str, name: str) -> bool:
    node = name.removeprefix(f"{base}-")
    return node != name and len(node) == 12 and all(digit in "0123456789abcdef" for digit in node)


def no_node_message(resource: str) -> str:
    if resource:
        return f"no alive Ray node offers the resource '{resource}' (SANDBOX_RESOURCE) that custom code needs"
    return "no alive Ray node to run custom code on"


def weakest_isolation(levels: Iterable[str | None]) -> str | None:
    known = list(levels)
    if not known or any(level not in STRENGTH for level in known):
        return None
    return min(known, key=lambda level: STRENGTH[str(level)])


class SandboxNodes:
    """One client's view of the sandbox nodes: the node set, its runs in flight, whose turn it is."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS, turn: int | None = None):
        self.refresh_seconds = refresh_seconds
        self.nodes: list[str] = []
        self.in_flight: dict[str, int] = {}
        self.failed_at: dict[str, float] = {}
        self._turn = random.randrange(1 << 16) if turn is None else turn
        self._read_at: float | None = None
        self._stale = False

    def refresh_due(self, now: float) -> bool:
        return self._stale or self._read_at is None or now - self._read_at >= self.refresh_seconds

    def update(self, node_ids: Iterable[str], now: float) -> list[str]:
        listed = sorted(set(node_ids))
        dropped = [node for node in self.nodes if node not in listed]
        self.nodes = listed
        self.failed_at = {node: at for node, at in self.failed_at.items() if node in listed}
        self._read_at, self._stale = now, False
        return dropped

    def failed(self, node: str, now: float) -> None:
        self.failed_at[node] = now
        self._stale = True

    def choose(self, now: float, exclude: Iterable[str] = ()) -> str | None:
        excluded = set(exclude)
        candidates = [node for node in self.nodes if node not in excluded]
        healthy = [node for node in candidates if node not in self.failed_at or self._recovered(node, now)]
        candidates = healthy or candidates
        if not candidates:
            return None
        fewest = min(self.in_flight.get(node, 0) for node in candidates)
        tied = [node for node in candidates if self.in_flight.get(node, 0) == fewest]
        self._turn += 1
        return tied[self._turn % len(tied)]

    def _recovered(self, node: str, now: float) -> bool:
        return now - self.failed_at[node] >= self.refresh_seconds

    def started(self, node: str) -> None:
        self.in_flight[node] = self.in_flight.get(node, 0) + 1

    def finished(self, node: str) -> None:
        left = self.in_flight.get(node, 0) - 1
        if left > 0:
            self.in_flight[node] = left
        else:
            self.in_flight.pop(node, None)
