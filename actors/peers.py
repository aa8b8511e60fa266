"""The other coordinators of the pool, as one coordinator reaches them.

Contract: `Peers` is what a coordinator needs of the pool to hand a call or a run to another
coordinator: whether coordinator `index` exists (alive or being restarted by Ray — a
coordinator that retired, or was never created, does not) and `call(index, method, *args)`,
the answer of that coordinator's method. `RayPeers` looks the named actors up in the
`flow-executor` namespace at each call (a handle kept could name an actor that retired and
was created again since); a call to a coordinator that does not exist raises `ValueError`.
`existing_coordinator(index)` is that lookup: the handle, or None.
"""

from __future__ import annotations

from typing import Any, Protocol

import ray

from actors.names import NAMESPACE, coordinator_name


class Peers(Protocol):
    def exists(self, index: int) -> bool: ...

    async def call(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any: ...


def existing_coordinator(index: int) -> Any | None:
    """Coordinator `index`'s handle if it exists (one that left the pool may still, a while)."""
    try:
        return ray.get_actor(coordinator_name(index), namespace=NAMESPACE)
    except ValueError:
        return None


class RayPeers:
    def exists(self, index: int) -> bool:
        return existing_coordinator(index) is not None

    async def call(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any:
        handle = existing_coordinator(index)
        if handle is None:
            raise ValueError(f"coordinator {index} does not exist")
        return await getattr(handle, method).remote(*args, **kwargs)
