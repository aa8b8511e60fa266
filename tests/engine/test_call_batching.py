"""CallBatcher: concurrent calls share one `send`, each caller gets its own result or error."""

from __future__ import annotations

import asyncio
import gc

import pytest

from engine.call_batching import CallBatcher


class Callee:
    """Records each batch; answers `item * 10`, or the exception an item names; can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_whole: Exception | None = None

    async def send(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail_whole is not None:
            raise self.fail_whole
        return [ValueError(f"item {item}") if item < 0 else item * 10 for item in items]


async def test_an_idle_call_goes_at_once_alone() -> None:
    callee = Callee()
    assert await CallBatcher(callee.send).call(3) == 30
    assert callee.batches == [[3]]


async def test_calls_made_together_share_one_send() -> None:
    callee = Callee()
    batcher = CallBatcher(callee.send)
    assert await asyncio.gather(*(batcher.call(i) for i in range(10))) == [i * 10 for i in range(10)]
    assert callee.batches == [list(range(10))]


async def test_calls_arriving_while_a_batch_is_in_flight_go_together_in_the_next() -> None:
    callee = Callee()
    callee.release.clear()
    batcher = CallBatcher(callee.send)
    first = asyncio.ensure_future(batcher.call(1))
    while not callee.batches:
        await asyncio.sleep(0)
    later = [asyncio.ensure_future(batcher.call(i)) for i in (2, 3, 4)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert callee.batches == [[1]]  # one batch in flight at a time: the others wait
    callee.release.set()
    assert await first == 10
    assert [await f for f in later] == [20, 30, 40]
    assert callee.batches == [[1], [2, 3, 4]]
    assert batcher.in_flight == 0


async def test_an_item_s_error_reaches_its_caller_alone() -> None:
    callee = Callee()
    batcher = CallBatcher(callee.send)
    answers = await asyncio.gather(batcher.call(1), batcher.call(-2), batcher.call(3), return_exceptions=True)
    assert answers[0] == 10 and answers[2] == 30
    assert isinstance(answers[1], ValueError) and str(answers[1]) == "item -2"


async def test_a_failed_send_fails_its_batch_and_the_next_batch_goes_on() -> None:
    callee = Callee()
    callee.fail_whole = ConnectionError("the callee died")
    batcher = CallBatcher(callee.send)
    answers = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert all(isinstance(answer, ConnectionError) for answer in answers)
    callee.fail_whole = None
    assert await batcher.call(5) == 50


async def test_a_send_answering_the_wrong_count_is_an_error_for_every_caller() -> None:
    async def short(items: list[int]) -> list[int | BaseException]:
        return items[:-1]

    batcher = CallBatcher(short)
    answers = await asyncio.gather(batcher.call(1), batcher.call(2), return_exceptions=True)
    assert all(isinstance(answer, RuntimeError) for answer in answers)


async def test_batches_are_capped_at_max_batch() -> None:
    callee = Callee()
    batcher = CallBatcher(callee.send, max_batch=4)
    await asyncio.gather(*(batcher.call(i) for i in range(10)))
    assert [len(batch) for batch in callee.batches] == [4, 4, 2]


async def test_max_in_flight_lets_that_many_batches_go_at_once() -> None:
    callee = Callee()
    callee.release.clear()
    batcher = CallBatcher(callee.send, max_in_flight=2)
    calls = [asyncio.ensure_future(batcher.call(1))]
    while len(callee.batches) < 1:
        await asyncio.sleep(0)
    calls.append(asyncio.ensure_future(batcher.call(2)))
    while len(callee.batches) < 2:
        await asyncio.sleep(0)
    assert batcher.in_flight == 2
    callee.release.set()
    assert [await call for call in calls] == [10, 20]


async def test_a_caller_that_stops_waiting_still_has_its_item_sent() -> None:
    callee = Callee()
    callee.release.clear()
    batcher = CallBatcher(callee.send)
    gone = asyncio.ensure_future(batcher.call(-1))  # its answer will be an error nobody reads
    while not callee.batches:
        await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    errors: list[dict[str, object]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, context: errors.append(context))
    callee.release.set()
    assert await batcher.call(2) == 20
    assert callee.batches == [[-1], [2]]
    gc.collect()
    assert errors == []  # the dropped caller's error was retrieved, not reported as lost
