"""The streamer delivering to a real websockets Backend 2 on 127.0.0.1.

All but the last test run `StreamerCore` in-process (no Ray); the last runs the Ray actor.
"""

import asyncio
import json
import logging
import time
import uuid

import pytest
import ray

from actors.streamer import Backend2Streamer, StreamerCore
from engine.settings import Settings


def events(flow_id: str, first: int, last: int, final: bool = False) -> list[dict]:
    out = [{"type": "element_completed", "flow_id": flow_id, "seq": s, "data": {}} for s in range(first, last + 1)]
    if final:
        out[-1]["type"] = "flow_completed"
    return out


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages]


def new_flow(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def core(**settings) -> StreamerCore:
    return StreamerCore(Settings(_env_file=None, **settings), give_up_after_finish=1.0)


@pytest.fixture
async def streamer():
    instance = core(event_retention_seconds=60)
    yield instance
    await instance.close()


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def test_events_arrive_once_each_in_seq_order_even_when_published_out_of_order(streamer, backend2):
    flow = new_flow("order")
    url = backend2.url(f"ws/{flow}")
    await streamer.publish(flow, url, events(flow, 4, 6))
    await streamer.publish(flow, url, events(flow, 1, 3))
    await streamer.publish(flow, url, events(flow, 7, 8, final=True), final=True)
    await wait_until(lambda: streamer.flows[flow].task.done())
    assert seqs(backend2.messages(f"ws/{flow}")) == list(range(1, 9))
    state = await streamer.delivery_state(flow)
    assert state["delivered_seq"] == 8 and state["pending"] == 0 and not state["connected"]
    assert (await streamer.stats())["connections"] == 0


async def test_publish_many_serves_several_flows_in_one_call(streamer, backend2):
    a, b = new_flow("many-a"), new_flow("many-b")
    await streamer.publish_many([(a, backend2.url(f"ws/{a}"), events(a, 1, 2), False), (b, backend2.url(f"ws/{b}"), events(b, 1, 3, final=True), True)])  # fmt: skip
    await streamer.publish_many([(a, backend2.url(f"ws/{a}"), [], True)])  # only the end: a finish
    await wait_until(lambda: streamer.flows[a].task.done() and streamer.flows[b].task.done())
    assert seqs(backend2.messages(f"ws/{a}")) == [1, 2] and seqs(backend2.messages(f"ws/{b}")) == [1, 2, 3]
    assert (await streamer.delivery_state(a))["finished"]


async def test_backend2_down_at_start_then_up_gets_everything_once(streamer, make_backend2):
    server = make_backend2(start=False)
    flow = new_flow("late")
    await streamer.publish(flow, server.url(f"ws/{flow}"), events(flow, 1, 5))
    await wait_until(lambda: streamer.flows[flow].reconnects >= 2)
    server.start()
    await streamer.publish(flow, server.url(f"ws/{flow}"), events(flow, 6, 6, final=True), final=True)
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=5)
    assert seqs(server.messages(f"ws/{flow}")) == list(range(1, 7))


async def test_backend2_killed_and_restarted_2s_later_gets_every_event_in_order(streamer, make_backend2):
    server = make_backend2()
    flow = new_flow("restart")
    url = server.url(f"ws/{flow}")

    async def publish_one_by_one(first: int, last: int) -> None:
        for seq in range(first, last + 1):
            last = seq == 60
            await streamer.publish(flow, url, events(flow, seq, seq, final=last), final=last)
            await asyncio.sleep(0.02)

    await publish_one_by_one(1, 20)
    await asyncio.to_thread(server.stop)
    stopped = time.monotonic()
    await publish_one_by_one(21, 40)  # the flow goes on while Backend 2 is down
    await asyncio.sleep(2 - (time.monotonic() - stopped))
    await asyncio.to_thread(server.start)
    await publish_one_by_one(41, 60)
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=10)

    assert seqs(server.unique(f"ws/{flow}")) == list(range(1, 61))
    received = seqs(server.messages(f"ws/{flow}"))
    assert len(received) - 60 <= 20  # resent: only what was not confirmed ≥ 1 s before the loss
    state = await streamer.delivery_state(flow)
    assert state["reconnects"] >= 1 and state["delivered_seq"] == 60 and not state["gave_up"]
    assert seqs(await streamer.events(flow)) == list(range(1, 61))


async def test_backend2_that_never_comes_back_does_not_hold_the_flow(streamer, make_backend2, caplog):
    secret = "tok-" + uuid.uuid4().hex
    flow = new_flow("never")
    url = make_backend2(start=False).url(f"ws/{flow}?token={secret}")
    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    await streamer.publish(flow, url, events(flow, 1, 3))
    await streamer.finish(flow)
    assert time.monotonic() - t0 < 2  # publish never waits for the connection attempts
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=5)
    state = await streamer.delivery_state(flow)
    assert state["gave_up"] and state["delivered_seq"] == 0 and state["last_error"]
    assert seqs(await streamer.events(flow, 1)) == [2, 3]
    assert secret not in json.dumps(state) and secret not in caplog.text


async def test_buffer_limit_drops_oldest_from_delivery_only(make_backend2):
    instance = core(event_buffer_limit=10)
    flow = new_flow("bounded")
    try:
        await instance.publish(flow, make_backend2(start=False).url("ws"), events(flow, 1, 100))
        state = await instance.delivery_state(flow)
        assert state["dropped"] == 90 and state["pending"] == 10
        assert len(await instance.events(flow)) == 100
    finally:
        await instance.close()


async def test_slow_backend2_on_one_flow_does_not_delay_another(streamer, backend2, make_backend2):
    slow = make_backend2(read_delay=1.0)
    started = time.monotonic()
    await streamer.publish("slow", slow.url("ws/slow"), events("slow", 1, 30))
    await asyncio.sleep(0.2)
    fast = new_flow("fast")
    t0 = time.monotonic()
    await streamer.publish(fast, backend2.url(f"ws/{fast}"), events(fast, 1, 50, final=True))
    await wait_until(lambda: len(backend2.messages(f"ws/{fast}")) == 50, timeout=5)
    assert time.monotonic() - t0 < 5  # behind the slow reader it would take 30 s
    await asyncio.sleep(7 - (time.monotonic() - started))  # a slow reader is not taken for a dead one
    received = slow.messages("ws/slow")
    assert 2 <= len(received) <= 8 and seqs(received) == list(range(1, len(received) + 1))
    assert streamer.flows["slow"].reconnects == 0 and streamer.flows["slow"].connected


async def test_finished_flows_expire_after_retention(backend2):
    instance = core(event_retention_seconds=0)
    flow = new_flow("gone")
    try:
        await instance.publish(flow, backend2.url(f"ws/{flow}"), events(flow, 1, 2, final=True), final=True)
        await wait_until(lambda: instance.flows[flow].task.done(), timeout=5)
        assert instance.expire(time.monotonic()) == 1
        assert await instance.events(flow) is None and await instance.delivery_state(flow) is None
        stats = await instance.stats()
        assert stats["flows"] == 0 and stats["connections"] == 0
    finally:
        await instance.close()


@pytest.fixture(scope="module")
def ray_started():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


async def test_the_ray_actor_delivers_in_order_and_answers_replay_and_state(ray_started, backend2):
    actor = Backend2Streamer.options(name=f"backend2-streamer-test-{uuid.uuid4().hex[:6]}").remote()
    flow = new_flow("ray")
    url = backend2.url(f"ws/{flow}")
    try:
        await asyncio.gather(*(actor.publish.remote(flow, url, events(flow, s, s)) for s in range(10, 0, -1)))
        await actor.publish.remote(flow, url, events(flow, 11, 11, final=True), True)
        await asyncio.to_thread(backend2.wait_for, f"ws/{flow}", lambda ev: len(ev) == 11)
        assert seqs(backend2.messages(f"ws/{flow}")) == list(range(1, 12))
        assert seqs(await actor.events.remote(flow, 5)) == list(range(6, 12))
        assert await actor.events.remote("unknown-flow") is None
        state = await actor.delivery_state.remote(flow)
        assert state["last_seq"] == 11 and state["dropped"] == 0
        assert (await actor.stats.remote())["flows"] == 1
    finally:
        ray.kill(actor)
