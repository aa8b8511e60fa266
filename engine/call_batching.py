"""Coalescing concurrent calls to one callee into batches (the ingress's submissions to a coordinator).

Contract: `CallBatcher(send)`; `await batcher.call(item)` returns the result of `item`. Items
are handed to `send(items)` — which returns one result per item, in order — in batches: the
first call waits `turns` turns of the event loop (microseconds, no timer) for others, at most
`max_in_flight` batches are in flight at a time, and items arriving meanwhile wait and go
together in the next batch (at most `max_batch` per batch). So an idle caller pays nothing
but those turns, and under load many calls share one `send` (one actor call instead of one
each). A result that is an exception is raised to that item's caller alone; `send` failing
as a whole raises its exception to every caller of the batch. A caller that stops waiting
(cancelled) does not take its item back: once queued, it is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class _Waiting[T, R]:
    item: T
    answer: asyncio.Future[R]


class CallBatcher[T, R]:
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[list[R | BaseException]]],
        *,
        turns: int = 1,
        max_in_flight: int = 1,
        max_batch: int = 64,
    ):
        self._send = send
        self._turns = turns
        self._max_in_flight = max_in_flight
        self._max_batch = max_batch
        self._waiting: list[_Waiting[T, R]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def call(self, item: T) -> R:
        answer: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        answer.add_done_callback(_retrieved)  # a caller that stopped waiting leaves no unretrieved error
        self._waiting.append(_Waiting(item, answer))
        if self._in_flight < self._max_in_flight:
            self._start()
        return await asyncio.shield(answer)

    def _start(self) -> None:
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        try:
            for _ in range(self._turns):
                await asyncio.sleep(0)
            while self._waiting:
                batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
                await self._deliver(batch)
        finally:
            self._in_flight -= 1

    async def _deliver(self, batch: list[_Waiting[T, R]]) -> None:
        try:
            results = await self._send([waiting.item for waiting in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)} items")
        except Exception as exc:
            for waiting in batch:
                if not waiting.answer.done():
                    waiting.answer.set_exception(exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            if waiting.answer.done():
                continue
            if isinstance(result, BaseException):
                waiting.answer.set_exception(result)
            else:
                waiting.answer.set_result(result)


def _retrieved(answer: asyncio.Future[Any]) -> None:
    if not answer.cancelled():
        answer.exception()
