"""Resizing a live pool of coordinators (FlowCoordinatorCore on one shared store, memory and
SQLite, without Ray; the pool's coordinators reach each other in process): a run stays with the
coordinator the store names and every call about it gets there; a coordinator leaving the pool
finishes its runs, hands its paused runs over and forwards late calls before it exits; the run
of a coordinator that no longer exists is taken over, once."""

import asyncio
import json
import uuid

import pytest

from actors import coordinator as coordinator_module
from actors.coordinator import FlowCoordinatorCore
from actors.names import coordinator_index
from engine.run_store import NewRun
from engine.settings import Settings
from services.hub import ServiceHub
from tests.actors.test_coordinator import FakeStreamer, flow, until
from tests.actors.test_coordinator_pause import waiting_flow
from tests.engine_doubles import TEST_REGISTRY


class Streamer(FakeStreamer):
    """The fake streamer, with what a coordinator leaving the pool asks it."""

    def __init__(self):
        super().__init__()
        self.busy = 0

        async def delivering():
            return self.busy

        self.delivering = type("Remote", (), {"remote": staticmethod(delivering)})


class LocalPeers:
    """The pool in one process: coordinator index → core; a core that exits leaves it."""

    def __init__(self):
        self.cores: dict[int, FlowCoordinatorCore] = {}
        self.calls: list[tuple[int, str]] = []

    def exists(self, index):
        return index in self.cores

    async def call(self, index, method, *args, **kwargs):
        if index not in self.cores:
            raise ValueError(f"no coordinator {index}")
        self.calls.append((index, method))
        return await getattr(self.cores[index], method)(*args, **kwargs)


class Member(FlowCoordinatorCore):
    async def _exit(self):
        del self.peers.cores[self.index]


@pytest.fixture(autouse=True)
def quick_retirement(monkeypatch):
    monkeypatch.setattr(coordinator_module, "RETIRE_POLL", 0.02)
    monkeypatch.setattr(coordinator_module, "RETIRE_LINGER", 0.5)


def pool(store, peers, count, indexes=None):
    settings = Settings(_env_file=None)
    for index in indexes if indexes is not None else range(count):
        peers.cores[index] = Member(index, count, Streamer(), ServiceHub(settings), store, TEST_REGISTRY, peers)
    return peers.cores


def flow_id_at(*places):
    """A flow id that falls to coordinator `index` in a pool of `count`, for each `(count, index)`."""
    while True:
        flow_id = f"pool-{uuid.uuid4().hex[:8]}"
        if all(coordinator_index(flow_id, count) == index for count, index in places):
            return flow_id


async def submitted(core, body):
    answer = await core.submit(json.dumps(body).encode(), "alice")
    assert answer["outcome"] == "started", answer


async def status_of(store, flow_id):
    record = await store.get_run(flow_id)
    return None if record is None else record.status


async def test_a_coordinator_leaving_the_pool_finishes_its_runs_hands_over_the_paused_and_exits(store):
    peers = LocalPeers()
    cores = pool(store, peers, 3)
    leaver = cores[2]
    running = flow_id_at((3, 2))
    waiting = flow_id_at((3, 2))
    await submitted(leaver, waiting_flow(waiting))
    await until(lambda: _paused(store, waiting))
    await submitted(leaver, flow(running, second="test_echo", seconds=1.0))
    leaver.streamer.busy = 1  # its streamer still has events to deliver

    for core in list(cores.values()):
        await core.set_pool_size(2)
    asked = await cores[0].status(running)  # asked elsewhere: answered by the coordinator running it
    assert asked is not None and asked["status"] == "running" and (2, "status") in peers.calls
    await until(lambda: _status_is(store, running, "completed"))
    await asyncio.sleep(0.2)
    assert leaver._closing is None and 2 in peers.cores  # it waits for its streamer to deliver everything
    leaver.streamer.busy = 0
    await until(lambda: _true(leaver._closing is not None and leaver._closing.is_set()))

    heir = coordinator_index(waiting, 2)
    assert (await store.get_run(waiting)).coordinator == heir  # the paused run changed hands in the store
    late = flow_id_at((2, heir))
    await submitted(leaver, flow(late, second="test_echo"))  # from a replica that still routes by 3
    assert (await store.get_run(late)).coordinator == heir
    await until(lambda: _true(2 not in peers.cores))  # it exits after forwarding for a while

    resumed = await cores[1 - heir].resume_paused(waiting, "w", {"signature": "0xab"}, "alice")
    assert resumed == {"outcome": "resumed", "flow_id": waiting}  # forwarded to the heir, which has it
    await until(lambda: _status_is(store, waiting, "completed"))
    before, after = leaver.streamer.events[waiting], cores[heir].streamer.events[waiting]
    assert [e["seq"] for e in before + after] == list(range(1, len(before) + len(after) + 1))  # no gap, no repeat
    assert after[-1]["type"] == "flow_completed"


async def test_an_heir_that_cannot_be_told_does_not_keep_a_coordinator_from_leaving(store):
    """The heir takes the paused run up when it starts again, like every run the store gives it."""
    peers = LocalPeers()
    cores = pool(store, peers, 3)
    waiting = flow_id_at((3, 2))
    await submitted(cores[2], waiting_flow(waiting, timeout=3600))
    await until(lambda: _paused(store, waiting))
    heir = coordinator_index(waiting, 2)
    told = peers.call

    async def unreachable(index, method, *args, **kwargs):
        if method == "adopt":
            raise ConnectionError("the heir is being restarted")
        return await told(index, method, *args, **kwargs)

    peers.call = unreachable
    for core in list(cores.values()):
        await core.set_pool_size(2)
    await until(lambda: _true(2 not in peers.cores))
    assert (await store.get_run(waiting)).coordinator == heir and waiting not in cores[heir]._wakes
    restarted = pool(store, peers, 2, indexes=[heir])[heir]
    await restarted.stats()  # its first call: it takes up the runs the store gives it
    assert waiting in restarted._wakes  # the paused run's timer is set at the heir


async def test_growing_back_before_it_has_left_keeps_a_coordinator_in_the_pool(store):
    peers = LocalPeers()
    cores = pool(store, peers, 3)
    cores[2].streamer.busy = 1
    await cores[2].set_pool_size(2)
    await asyncio.sleep(0.1)
    await cores[2].set_pool_size(3)
    cores[2].streamer.busy = 0
    await until(lambda: _true(cores[2]._retiring is None or cores[2]._retiring.done()))
    assert cores[2]._closing is None and 2 in peers.cores


async def test_growing_back_after_it_handed_over_keeps_it_too_and_it_takes_new_runs_again(store):
    peers = LocalPeers()
    cores = pool(store, peers, 3)
    for core in list(cores.values()):
        await core.set_pool_size(2)
    await until(lambda: _true(cores[2]._closing is not None and cores[2]._closing.is_set()))
    for core in list(cores.values()):
        await core.set_pool_size(3)  # while it forwards late calls, before it exits
    flow_id = flow_id_at((3, 2))
    await submitted(cores[2], flow(flow_id, second="test_echo"))
    assert (await store.get_run(flow_id)).coordinator == 2  # its own again, not forwarded
    await asyncio.sleep(coordinator_module.RETIRE_LINGER + 0.2)
    assert 2 in peers.cores and cores[2]._retiring is None


async def test_after_growing_a_run_stays_with_its_coordinator_and_calls_reach_it(store):
    peers = LocalPeers()
    cores = pool(store, peers, 2)
    flow_id = flow_id_at((2, 1), (3, 2))
    await submitted(cores[1], flow(flow_id))  # test_hang: runs until cancelled
    pool(store, peers, 3, indexes=[2])
    for core in list(cores.values()):
        await core.set_pool_size(3)
    assert (await cores[2].cancel(flow_id, owner="mallory"))["outcome"] == "unknown"  # not theirs, even forwarded
    answer = await cores[2].cancel(flow_id, owner="alice")  # where a replica routes it now (as the ingress calls)
    assert answer["outcome"] == "cancelled" and (1, "cancel") in peers.calls
    assert (await store.get_run(flow_id)).coordinator == 1
    assert await cores[2].status(flow_id, "mallory") is None  # forwarded calls keep their owner check


async def test_a_run_of_a_coordinator_that_is_gone_is_taken_over_once(store):
    peers = LocalPeers()
    cores = pool(store, peers, 2)
    await store.open()
    ids = [flow_id_at((2, 0)), flow_id_at((2, 1))]
    for flow_id in ids:
        request = flow(flow_id, second="test_echo")
        await store.create_run(NewRun(flow_id, "alice", json.dumps(request).encode(), "ws://127.0.0.1:9/ws", 7, 1.0))
    await cores[0].set_pool_size(2)  # coordinator 7 does not exist: each takes the runs that fall to it
    await until(lambda: _status_is(store, ids[0], "completed"))
    assert await status_of(store, ids[1]) == "pending"  # not coordinator 0's to take (1 has not looked)
    snapshot = await cores[0].status(ids[1])  # asked about it: coordinator 0 takes it over at once
    assert snapshot is not None
    await until(lambda: _status_is(store, ids[1], "completed"))
    assert [(await store.get_run(f)).coordinator for f in ids] == [0, 0]
    assert not await store.claim_run(ids[1], 7, 1)  # taken once


async def _paused(store, flow_id):
    return await status_of(store, flow_id) == "paused"


async def _status_is(store, flow_id, status):
    return await status_of(store, flow_id) == status


async def _true(value):
    return value
