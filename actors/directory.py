"""Creation of the long-lived actors: the streamer and the pool of coordinators.

Contract: `ensure_actors(count)` creates the missing ones under their names (`actors.names`;
idempotent: `get_if_exists`), detached and restartable, so a crashed coordinator comes back,
and returns the coordinators' handles in index order.
"""

from __future__ import annotations

from typing import Any

from actors.coordinator import FlowCoordinator
from actors.names import ACTOR_OPTIONS, STREAMER_NAME, coordinator_name
from actors.ray_types import remote_view
from actors.streamer import Backend2Streamer


def ensure_actors(coordinator_count: int) -> list[Any]:
    """The coordinators, creating them and the streamer when missing."""
    remote_view(Backend2Streamer).options(name=STREAMER_NAME, **ACTOR_OPTIONS).remote()
    return [
        remote_view(FlowCoordinator).options(name=coordinator_name(i), **ACTOR_OPTIONS).remote(i, coordinator_count)
        for i in range(coordinator_count)
    ]
