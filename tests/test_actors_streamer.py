"""The streamer delivering to a real websockets Backend 2 on 127.0.0.1 (in-process, no Ray)."""

import asyncio
import time
import uuid

import pytest

from actors.streamer import StreamerCore
from engine.settings import Settings
from tests.fakes.backend2 import FakeBackend2
from tests.fixtures.service import free_port


def events(flow_id, first, last, final=False):
    out = [{"type": "element_completed", "flow_id": flow_id, "seq": s, "data": {}} for s in range(first, last + 1)]
    if final:
        out[-1]["type"] = "flow_completed"
    return out


@pytest.fixture
async def streamer():
    core = StreamerCore(Settings(_env_file=None, event_retention_seconds=60), give_up_after_finish=1.0)
    yield core
    await core.close()


async def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def seqs(messages):
    return [m["seq"] for m in messages]


async def test_events_arrive_once_each_in_seq_order_even_when_published_out_of_order(streamer, backend2):
    flow = f"order-{uuid.uuid4().hex[:6]}"
    url = backend2.url(f"ws/{flow}")
    await streamer.publish(flow, url, events(flow, 4, 6))
    await streamer.publish(flow, url, events(flow, 1, 3))
    await streamer.publish(flow, url, events(flow, 7, 8, final=True))
    await streamer.finish(flow)
    await wait_until(lambda: len(backend2.messages(f"ws/{flow}")) >= 8)
    assert seqs(backend2.messages(f"ws/{flow}")) == list(range(1, 9))
    await wait_until(lambda: streamer.flows[flow].task.done())
    state = await streamer.delivery_state(flow)
    assert state["delivered_seq"] == 8 and not state["connected"]


async def test_backend2_down_at_start_then_up_gets_everything(streamer):
    port = free_port()
    server = FakeBackend2(port=port)
    flow = "late-start"
    url = f"ws://127.0.0.1:{port}/ws/{flow}"
    try:
        await streamer.publish(flow, url, events(flow, 1, 5))
        await asyncio.sleep(0.5)
        assert (await streamer.delivery_state(flow))["reconnects"] >= 1
        server.start()
        await streamer.publish(flow, url, events(flow, 6, 6, final=True))
        await streamer.finish(flow)
        await wait_until(lambda: len(server.unique(f"ws/{flow}")) == 6)
        assert seqs(server.unique(f"ws/{flow}")) == list(range(1, 7))
    finally:
        server.shutdown()


async def test_backend2_killed_and_restarted_2s_later_gets_every_event_in_order(streamer):
    port = free_port()
    server = FakeBackend2(port=port).start()
    flow = "restart"
    url = f"ws://127.0.0.1:{port}/ws/{flow}"
    try:
        for seq in range(1, 21):
            await streamer.publish(flow, url, events(flow, seq, seq))
            await asyncio.sleep(0.01)
        await wait_until(lambda: len(server.unique(f"ws/{flow}")) == 20)
        await asyncio.to_thread(server.stop)
        for seq in range(21, 41):
            await streamer.publish(flow, url, events(flow, seq, seq))
            await asyncio.sleep(0.05)
        await asyncio.to_thread(server.start)  # ~1 s of sends above + restart: down ~1-2 s
        await streamer.publish(flow, url, events(flow, 41, 41, final=True))
        await streamer.finish(flow)
        await wait_until(lambda: len(server.unique(f"ws/{flow}")) == 41, timeout=15)
        unique = server.unique(f"ws/{flow}")
        assert seqs(unique) == list(range(1, 42))
        assert (await streamer.delivery_state(flow))["reconnects"] >= 1
        assert seqs(await streamer.events(flow, 0)) == list(range(1, 42))
    finally:
        server.shutdown()


async def test_backend2_that_never_comes_back_does_not_hold_the_flow(streamer):
    flow = "never"
    url = f"ws://127.0.0.1:{free_port()}/ws/{flow}"
    t0 = time.monotonic()
    await streamer.publish(flow, url, events(flow, 1, 3, final=True))
    await streamer.finish(flow)
    assert time.monotonic() - t0 < 0.1
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=5)
    state = await streamer.delivery_state(flow)
    assert state["gave_up"] and state["delivered_seq"] == 0 and state["last_error"]
    assert seqs(await streamer.events(flow, 1)) == [2, 3]


async def test_buffer_limit_drops_oldest_from_delivery_only():
    core = StreamerCore(Settings(_env_file=None, event_buffer_limit=10), give_up_after_finish=0.2)
    flow = "bounded"
    try:
        await core.publish(flow, f"ws://127.0.0.1:{free_port()}/ws", events(flow, 1, 100))
        state = await core.delivery_state(flow)
        assert state["dropped"] == 90 and state["pending"] == 10
        assert len(await core.events(flow)) == 100
    finally:
        await core.close()


async def test_slow_backend2_on_one_flow_does_not_delay_another(streamer, backend2):
    slow = FakeBackend2(read_delay=1.0).start()
    try:
        await streamer.publish("slow", slow.url("ws/slow"), events("slow", 1, 30))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await streamer.publish("fast", backend2.url("ws/fast"), events("fast", 1, 50, final=True))
        await wait_until(lambda: len(backend2.messages("ws/fast")) == 50, timeout=5)
        assert time.monotonic() - t0 < 0.5
        assert len(slow.messages("ws/slow")) < 5
    finally:
        slow.shutdown()


async def test_finished_flows_expire_after_retention():
    core = StreamerCore(Settings(_env_file=None, event_retention_seconds=0), give_up_after_finish=0.1)
    try:
        await core.publish("gone", f"ws://127.0.0.1:{free_port()}/ws", events("gone", 1, 2, final=True))
        await core.finish("gone")
        await wait_until(lambda: core.flows["gone"].task.done(), timeout=5)
        assert core.expire(time.monotonic() + 1) == 1
        assert await core.events("gone") is None
        assert (await core.stats())["flows"] == 0
    finally:
        await core.close()
