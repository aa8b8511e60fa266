"""Fair sandbox slots: caps per flow and in all, flows served in turn, cancelled waiters gone."""

import asyncio

import pytest

from services.sandbox.slots import FairSlots


async def test_caps_per_key_and_in_total():
    slots = FairSlots(total=3, per_key=2)
    await slots.acquire("a")
    await slots.acquire("a")
    third_a = asyncio.ensure_future(slots.acquire("a"))
    await asyncio.sleep(0)
    assert not third_a.done()  # a's cap
    await slots.acquire("b")  # another flow still gets the free slot
    assert slots.in_use == 3
    slots.release("a")
    await asyncio.wait_for(third_a, 1)
    assert slots.held == {"a": 2, "b": 1}


async def test_a_flow_with_a_long_queue_does_not_starve_another():
    slots = FairSlots(total=1, per_key=1)
    order = []

    async def run(key, index):
        async with slots.hold(key):
            order.append(f"{key}{index}")
            await asyncio.sleep(0)

    await slots.acquire("hog")
    hog = [asyncio.ensure_future(run("hog", i)) for i in range(20)]
    await asyncio.sleep(0)
    victim = asyncio.ensure_future(run("victim", 0))
    await asyncio.sleep(0)
    slots.release("hog")
    await asyncio.gather(*hog, victim)
    assert order.index("victim0") <= 1, order  # served after at most one more hog run, not twenty


async def test_a_cancelled_waiter_leaves_the_queue_and_never_runs():
    slots = FairSlots(total=1, per_key=1)
    await slots.acquire("a")
    waiter = asyncio.ensure_future(slots.acquire("b"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert "b" not in slots.waiting
    slots.release("a")
    assert slots.in_use == 0


async def test_a_waiter_timed_out_just_as_it_was_granted_gives_the_slot_back():
    slots = FairSlots(total=1, per_key=1)
    await slots.acquire("a")
    waiter = asyncio.ensure_future(slots.acquire("b"))
    await asyncio.sleep(0)
    slots.release("a")  # grants b's future…
    waiter.cancel()  # …which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.in_use == 0
