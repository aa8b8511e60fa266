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
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.http11 import Response

from actors.streamer import DELIVERY_FAILED, POLICY_REFUSED, Backend2Streamer, StreamerCore
from engine.settings import Settings
from tests.fakes.backend2 import FakeBackend2


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


class CountingListener:
    """A TCP listener on 127.0.0.1 that only counts the connections it gets."""

    def __init__(self):
        self.connections = 0

    async def __aenter__(self):
        def accepted(reader, writer):
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()


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
    assert state["released"] and await streamer.events(flow) == []  # all confirmed: the store has them


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


async def test_one_bad_entry_of_publish_many_never_costs_the_others(streamer, backend2, caplog):
    a, b, bad = new_flow("iso-a"), new_flow("iso-b"), new_flow("iso-bad")
    await streamer.publish_many(
        [
            (a, backend2.url(f"ws/{a}"), json.dumps(events(a, 1, 3, final=True)).encode(), True),
            (bad, backend2.url(f"ws/{bad}"), b"[{not json", True),
            (b, backend2.url(f"ws/{b}"), events(b, 1, 2, final=True), True),
        ]
    )
    await wait_until(lambda: streamer.flows[a].task.done() and streamer.flows[b].task.done())
    assert seqs(backend2.messages(f"ws/{a}")) == [1, 2, 3] and seqs(backend2.messages(f"ws/{b}")) == [1, 2]
    assert f"flow {bad}: events not accepted" in caplog.text


async def test_an_event_over_the_frame_limit_is_delivered_truncated_and_the_flow_completes(streamer, backend2):
    flow = new_flow("huge")
    big = events(flow, 1, 3, final=True)
    big[1]["data"] = {"outputs": {"blob": "x" * 2_000_000, "note": "kept"}}
    await streamer.publish(flow, backend2.url(f"ws/{flow}"), big, final=True)
    received = await asyncio.to_thread(backend2.wait_for_completion, f"ws/{flow}", 10)
    assert seqs(received) == [1, 2, 3]  # the fake Backend 2 has websockets' default 1 MiB max_size
    outputs = received[1]["data"]["outputs"]
    assert outputs["note"] == "kept" and outputs["blob"]["truncated"] and outputs["blob"]["bytes"] == 2_000_002
    state = await streamer.delivery_state(flow)
    assert state["truncated"] == 1 and state["reconnects"] == 0


@pytest.mark.parametrize("max_connect_attempts", [4, 1])
async def test_a_message_backend2_refuses_is_found_skipped_after_three_tries_and_recorded(max_connect_attempts):
    """Refusals are Backend 2 answering, not failures to connect: they never count towards
    `BACKEND2_MAX_CONNECT_ATTEMPTS` (with 1, a refusal counted as a failure would give up)."""
    streamer = core(event_retention_seconds=60, backend2_max_connect_attempts=max_connect_attempts)
    small = FakeBackend2(max_size=2_000).start()  # refuses (1009) any message over 2 KB
    try:
        flow = new_flow("refused")
        batch = events(flow, 1, 6, final=True)
        batch[2]["data"] = {"outputs": {"text": "y" * 5_000}}  # within MAX_EVENT_BYTES, over this Backend 2's limit
        await streamer.publish(flow, small.url(f"ws/{flow}"), batch, final=True)
        received = await asyncio.to_thread(small.wait_for_completion, f"ws/{flow}", 30)
        assert seqs(small.unique(f"ws/{flow}")) == [1, 2, 4, 5, 6]  # only the refused one is missing
        state = await streamer.delivery_state(flow)
        assert state["refused_seqs"] == [3] and not state["gave_up"]
        assert received[-1]["type"] == "flow_completed"
    finally:
        small.shutdown()
        await streamer.close()


async def test_events_are_read_a_page_at_a_time():
    instance = core(events_page_max_bytes=100_000)
    flow = new_flow("pages")
    try:
        await instance.publish(flow, "ws://127.0.0.1:8265/refused", events(flow, 1, 12_000))
        assert seqs(await instance.events(flow)) == list(range(1, 501))
        assert seqs(await instance.events(flow, 11_900, limit=1_000)) == list(range(11_901, 12_001))
        assert len(await instance.events(flow, 0, limit=10**9)) <= 5_000
        assert seqs(await instance.events(flow, 0, limit=0)) == [1]
        big = instance.flows[flow].log.events[2] | {"data": {"x": "y" * 200_000}}  # a page stops at its byte budget
        instance.flows[flow].log._texts[2] = json.dumps(big).encode()
        assert seqs(await instance.events(flow, 0, limit=100)) == [1, 2]
    finally:
        await instance.close()


async def test_refused_destinations_are_never_connected_to(monkeypatch, backend2):
    async with CountingListener() as listener:
        urls = [
            f"ws://0.0.0.0:{listener.port}/x",  # Linux would connect this to loopback
            f"ws://169.254.169.254:{listener.port}/latest",
            f"ws://127.0.0.1:{listener.port + 1}/other-port",  # the allowed host on another port
            f"ws://[::1]:{listener.port}/v6",  # an IP entry allows that address only
            "ws://127.0.0.1:8265/api/jobs",  # the Ray dashboard
            f"ws://rebind.test:{listener.port}/",  # allowed by name, resolves to metadata
        ]
        instance = core(backend2_allowed_hosts=f"127.0.0.1:{listener.port},rebind.test:{listener.port}")
        real = asyncio.get_running_loop().getaddrinfo

        async def fake_getaddrinfo(host, *args, **kwargs):
            if host == "rebind.test":
                return [(2, 1, 6, "", ("169.254.169.254", listener.port))]
            return await real(host, *args, **kwargs)

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake_getaddrinfo)
        try:
            for index, url in enumerate(urls):
                await instance.publish(f"refused-{index}", url, events("x", 1, 1))
            await wait_until(lambda: all(d.task.done() for d in instance.flows.values()), timeout=5)
            assert listener.connections == 0
            for flow, delivery in instance.flows.items():
                state = await instance.delivery_state(flow)
                assert state["gave_up"] and state["last_error"] == POLICY_REFUSED, flow
                assert delivery.attempts == 1
            allowed = new_flow("allowed")
            await instance.publish(allowed, f"ws://127.0.0.1:{listener.port}/ok", events(allowed, 1, 1))
            await wait_until(lambda: listener.connections >= 1, timeout=5)  # the control: it does connect
            assert instance.flows[allowed].last_error == DELIVERY_FAILED  # not a WebSocket server
        finally:
            await instance.close()


async def test_an_address_written_as_one_is_connected_to_without_a_lookup(monkeypatch, streamer, backend2):
    looked_up: list[str] = []
    real = asyncio.get_running_loop().getaddrinfo

    async def counting_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        return await real(host, *args, **kwargs)

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", counting_getaddrinfo)
    flow = new_flow("literal")
    await streamer.publish(flow, backend2.url(f"ws/{flow}"), events(flow, 1, 2, final=True), final=True)
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=5)
    assert seqs(backend2.messages(f"ws/{flow}")) == [1, 2]
    assert looked_up == []  # 127.0.0.1 needs no resolver thread; a name would (see the rebinding test)


async def test_numeric_spellings_of_loopback_reach_a_local_backend2_by_default(streamer, backend2):
    flow = new_flow("spelling")
    url = backend2.url(f"ws/{flow}").replace("127.0.0.1", "2130706433")
    await streamer.publish(flow, url, events(flow, 1, 2, final=True), final=True)
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=5)
    assert seqs(backend2.messages(f"ws/{flow}")) == [1, 2]


async def test_a_redirect_is_never_followed(caplog):
    caplog.set_level(logging.INFO)
    async with CountingListener() as listener:
        location = f"ws://127.0.0.1:{listener.port}/elsewhere?token=secret-in-location"

        def redirect(connection, request):
            return Response(302, "Found", Headers([("Location", location), ("Content-Length", "0")]))

        async with serve(lambda c: None, "127.0.0.1", 0, process_request=redirect) as server:
            port = server.sockets[0].getsockname()[1]
            instance = core(backend2_max_connect_attempts=3)
            flow = new_flow("redirect")
            try:
                await instance.publish(flow, f"ws://127.0.0.1:{port}/ws", events(flow, 1, 1))
                await wait_until(lambda: instance.flows[flow].task.done(), timeout=10)
                state = await instance.delivery_state(flow)
                assert state["gave_up"] and state["connect_attempts"] == 3 and state["last_error"] == DELIVERY_FAILED
            finally:
                await instance.close()
        assert listener.connections == 0
    assert "secret-in-location" not in caplog.text and f"127.0.0.1:{listener.port}/elsewhere" in caplog.text


async def test_retries_are_bounded_and_the_error_is_generic(make_backend2, caplog):
    caplog.set_level(logging.INFO)
    instance = core(backend2_max_connect_attempts=4)
    flow = new_flow("bounded-retries")
    url = make_backend2(start=False).url(f"ws/{flow}?token=hidden")  # a port that refuses
    try:
        await instance.publish(flow, url, events(flow, 1, 2))  # a running flow: no finish deadline
        await wait_until(lambda: instance.flows[flow].task.done(), timeout=10)
        state = await instance.delivery_state(flow)
        assert state["connect_attempts"] == 4 and state["gave_up"] and state["last_error"] == DELIVERY_FAILED
        await asyncio.sleep(0.5)
        assert instance.flows[flow].attempts == 4
        assert "gave up delivering" in caplog.text and "hidden" not in caplog.text
    finally:
        await instance.close()


async def test_a_slow_backend2_is_cut_off_at_the_retention_deadline(make_backend2):
    slow = make_backend2(read_delay=0.02)
    instance = core(event_retention_seconds=1)
    flow = new_flow("deadline")
    try:
        heavy = events(flow, 1, 300, final=True)
        for message in heavy:  # 15 MB: more than socket buffers hold, ~6 s for this reader
            message["data"] = {"outputs": {"text": "w" * 50_000}}
        await instance.publish(flow, slow.url(f"ws/{flow}"), heavy, final=True)
        task = instance.flows[flow].task
        await asyncio.sleep(1.0)
        assert not task.done()  # still delivering to the slow reader
        instance.expire(time.monotonic())  # (the sweeper may have done it already)
        assert flow not in instance.flows
        await wait_until(task.done, timeout=3)
        assert task.cancelled()
        await wait_until(lambda: not slow._live, timeout=10)  # the connection is gone (frames in flight may land)
        received = len(slow.messages(f"ws/{flow}"))
        await asyncio.sleep(1.0)
        assert len(slow.messages(f"ws/{flow}")) == received < 300  # nothing more after the cut
        assert instance.logs.total_bytes == 0
    finally:
        await instance.close()


async def test_retained_bytes_are_capped_per_flow_and_in_total():
    instance = core(event_log_max_flow_bytes=64 * 1024, event_log_max_total_bytes=1024 * 1024)
    refused = "ws://127.0.0.1:8265/x"

    def chunky(flow_id: str, first: int, last: int) -> list[dict]:
        out = events(flow_id, first, last)
        for message in out:
            message["data"] = {"outputs": {"text": "z" * 2_000}}
        return out

    try:
        await instance.publish("capped", refused, chunky("capped", 1, 200))
        state = await instance.delivery_state("capped")
        page = await instance.events("capped", 0, 5_000)
        assert state["retained_bytes"] <= 64 * 1024 and state["evicted"] == 200 - len(page)
        assert page[0]["seq"] == 1 and page[-1]["seq"] == 200
        big = core(event_log_max_total_bytes=1024 * 1024)
        try:
            for name in ("first", "second", "running"):
                await big.publish(name, refused, chunky(name, 1, 200), final=name != "running")  # ~400 KB each
            assert big.logs.total_bytes <= 1024 * 1024
            assert sorted(big.flows) == ["running", "second"]  # the oldest finished log went first
        finally:
            await big.close()
    finally:
        await instance.close()


@pytest.fixture(scope="module")
def ray_started():
    started = not ray.is_initialized()
    if started:  # a Ray of its own: the actor's run store in memory (the service's Ray has a store directory)
        ray.init(
            address="local",  # a new local Ray, never a cluster `ray start` left running on the box
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"RUN_STORE": "memory"}},
        )
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
        deadline = time.monotonic() + 30
        while not (state := await actor.delivery_state.remote(flow))["released"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the delivery ends once the last pong came
        assert state["released"] and await actor.events.remote(flow, 5) == []  # all confirmed: the store has them
        assert await actor.events.remote("unknown-flow") is None
        assert state["last_seq"] == 11 and state["dropped"] == 0
        assert (await actor.stats.remote())["flows"] == 1
    finally:
        ray.kill(actor)


async def test_a_paused_flow_is_forgotten_once_delivered_and_its_resume_delivers_again(streamer, backend2):
    """A paused flow costs the streamer nothing; the events of its resumed run go on after
    `flow_paused` (without a store here: from the seq the resume starts at)."""
    flow = new_flow("paused")
    url = backend2.url(f"ws/{flow}")
    batch = events(flow, 1, 3)
    batch.append({"type": "flow_paused", "flow_id": flow, "seq": 4, "timestamp": "t", "element_id": "w", "data": {}})
    await streamer.publish(flow, url, batch, final=True)
    await wait_until(lambda: flow not in streamer.flows, timeout=15)
    assert await streamer.delivery_state(flow) is None and len(streamer.logs) == 0
    await streamer.publish(flow, url, events(flow, 5, 7, final=True), final=True)
    received = await asyncio.to_thread(backend2.wait_for_completion, f"ws/{flow}", 15)
    assert seqs(received) == list(range(1, 8))
    await wait_until(lambda: streamer.flows[flow].task.done(), timeout=15)
    assert (await streamer.delivery_state(flow))["released"]  # finished: counters kept until retention


async def test_a_restarted_streamer_of_a_pool_resumes_only_its_coordinators_flows(backend2):
    """Two streamers on one store, each delivering the runs the store gives its coordinator
    (whatever their flow ids hash to: a run can change hands when the pool is resized): after a
    restart each delivers its own open flows from the store and leaves the other's alone."""
    from engine.run_store import Commit, NewRun, RunUpdate
    from services.run_store.memory import MemoryRunStore

    store = MemoryRunStore()
    await store.open()
    flows = [new_flow("pool") for _ in range(6)]
    owners = {flow: i % 2 for i, flow in enumerate(flows)}
    for flow in flows:
        await store.create_run(NewRun(flow, "", b"{}", backend2.url(f"ws/{flow}"), owners[flow], 1.0))
    await store.claim_run(flows[0], 0, 1)  # handed from coordinator 0 to 1
    owners[flows[0]] = 1
    stored = [(flow, e["seq"], json.dumps(e)) for flow in flows for e in events(flow, 1, 3, final=True)]
    ended = [RunUpdate(flow, "completed", {"flow_id": flow, "status": "completed"}, 2.0) for flow in flows]  # type: ignore[typeddict-item]
    await store.commit(Commit(events=stored, runs=ended))
    streamers = [StreamerCore(Settings(_env_file=None), store=store, coordinator=i) for i in range(2)]
    try:
        for streamer in streamers:
            await streamer.stats()  # the first call resumes the open deliveries of the store
        for i, streamer in enumerate(streamers):
            assert sorted(streamer.flows) == sorted(f for f in flows if owners[f] == i)
        for flow in flows:
            await asyncio.to_thread(backend2.wait_for, f"ws/{flow}", lambda ev: len(ev) == 3)
            assert seqs(backend2.messages(f"ws/{flow}")) == [1, 2, 3]  # each flow once, by its own streamer
        async with asyncio.timeout(15):
            while sum([await streamer.delivering() for streamer in streamers]):
                await asyncio.sleep(0.05)
        assert [(await store.get_run(flow)).delivered_seq for flow in flows] == [3] * 6  # written when idle
    finally:
        for streamer in streamers:
            await streamer.close()


async def test_confirmations_of_many_flows_are_recorded_in_one_store_write(monkeypatch, backend2):
    """Backend 2's confirmations go to the store together, every `CONFIRM_FLUSH_INTERVAL`: one
    write for all the flows confirmed meanwhile, never one per flow."""
    from actors import streamer as streamer_module
    from engine.run_store import NewRun
    from services.run_store.memory import MemoryRunStore

    class CountingStore(MemoryRunStore):
        def __init__(self):
            super().__init__()
            self.writes: list[dict[str, int]] = []

        async def mark_delivered_many(self, seqs):
            self.writes.append(dict(seqs))
            await super().mark_delivered_many(seqs)

    monkeypatch.setattr(streamer_module, "CONFIRM_FLUSH_INTERVAL", 60.0)  # nothing flushed before close()
    store = CountingStore()
    await store.open()
    flows = [new_flow("confirmed") for _ in range(10)]
    for flow in flows:
        await store.create_run(NewRun(flow, "", b"{}", backend2.url(f"ws/{flow}"), 0, 1.0))
    instance = StreamerCore(Settings(_env_file=None), store=store)
    try:
        for flow in flows:
            await instance.publish(flow, backend2.url(f"ws/{flow}"), events(flow, 1, 3, final=True), final=True)
        await wait_until(lambda: all(instance.flows[f].task.done() for f in flows), timeout=15)
        assert store.writes == []
    finally:
        await instance.close()  # writes what is pending
    assert store.writes == [{flow: 3 for flow in flows}]
    assert [(await store.get_run(flow)).delivered_seq for flow in flows] == [3] * 10
