"""Fair sandbox slots: a bounded number of concurrent runs, shared fairly between flows.

Contract: `FairSlots(total, per_key)` admits at most `total` holders at once and at most
`per_key` holders of one key (a flow id). `async with slots.hold(key):` waits for a slot.
When a slot frees, the keys with waiters are served in turn (round robin), so a flow that
queued 64 runs delays another flow's single run by at most one run per busy flow, not by its
whole queue. A waiter that is cancelled (its element timed out, its flow was cancelled) leaves
the queue at once and never starts. `acquire(key)` / `release(key)` are the same in two calls.
Pure asyncio, bound to the loop it is first used on.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class FairSlots:
    def __init__(self, total: int, per_key: int):
        if total < 1 or per_key < 1:
            raise ValueError("slot counts must be at least 1")
        self.total = total
        self.per_key = per_key
        self.held: dict[str, int] = {}
        self.waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def in_use(self) -> int:
        return sum(self.held.values())

    def _free_for(self, key: str) -> bool:
        return self.in_use < self.total and self.held.get(key, 0) < self.per_key

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        await self.acquire(key)
        try:
            yield
        finally:
            self.release(key)

    async def acquire(self, key: str) -> None:
        if key not in self.waiting and self._free_for(key):
            self.held[key] = self.held.get(key, 0) + 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, deque()).append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # granted just as it was cancelled: give it back
                self.release(key)
            else:
                self._forget(key, future)
            raise

    def _forget(self, key: str, future: asyncio.Future[None]) -> None:
        queue = self.waiting.get(key)
        if queue is not None and future in queue:
            queue.remove(future)
            if not queue:
                del self.waiting[key]

    def release(self, key: str) -> None:
        self.held[key] -= 1
        if not self.held[key]:
            del self.held[key]
        self._grant()

    def _grant(self) -> None:
        """Hand free slots to waiting keys in turn; a served key goes to the back of the line."""
        progress = True
        while progress and self.waiting and self.in_use < self.total:
            progress = False
            for key in list(self.waiting):
                if not self._free_for(key):
                    continue
                queue = self.waiting[key]
                future = queue.popleft()
                if not queue:
                    del self.waiting[key]
                else:
                    self.waiting.move_to_end(key)
                if future.done():  # cancelled while waiting
                    progress = True
                    break
                self.held[key] = self.held.get(key, 0) + 1
                future.set_result(None)
                progress = True
                break
