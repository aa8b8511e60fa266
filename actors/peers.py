"""The other coordinators of the pool, as one coordinator reaches them.

Contract: `Peers` is what a coordinator needs of the pool to hand a call or a run to another
coordinator: whether coordinator `index` exists (alive or being restarted by Ray — a
coordinator that retired, or was never created, does not) and `call(index, method, *args)`,
the answer of that coordinator's method. `RayPeers` looks the named actors up in the
`flow-executor` namespace at each call (a handle kept could name an actor that retired and
was created again since); a call to a coordinator that does not exist raises `ValueError`.
"""

from __future__ import annotations

from typing import Any, Protocol

import ray

from actors.names import NAMESPACE, coordinator_name


class Peers(Protocol):
    def exists(self, index: int) -> bool: ...

    async def call(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any: ...


class RayPeers:
    def exists(self, index: int) -> bool:
        try:
            ray.get_actor(coordinator_name(index), namespace=NAMESPACE)
        except ValueError:
            return False
        return True

    async def call(self, index: int, method: str, *args: Any, **kwargs: Any) -> Any:
        handle = ray.get_actor(coordinator_name(index), namespace=NAMESPACE)
        return await getattr(handle, method).remote(*args, **kwargs)
