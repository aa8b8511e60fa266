"""FlowCoordinatorCore on a real run store (memory and SQLite), without Ray: a coordinator that
dies mid-run is replaced by one that resumes the run from its checkpoints; a store that refuses
writes stops the runs loudly."""

import asyncio
import json
import uuid
from types import SimpleNamespace

from actors import coordinator as coordinator_module
from actors.coordinator import FlowCoordinatorCore
from engine.run_store import RunStoreError
from engine.settings import Settings
from services.hub import ServiceHub
from tests.engine_doubles import CALLS, TEST_REGISTRY


class FakeStreamer:
    """What the coordinator calls on the streamer actor: `publish_many.remote(entries)`."""

    def __init__(self):
        self.events: dict[str, list[dict]] = {}

        async def publish_many(entries):
            for flow_id, _url, payload, _final in entries:
                self.events.setdefault(flow_id, []).extend(json.loads(payload))

        self.publish_many = SimpleNamespace(remote=publish_many)


class Mortal:
    """A store as one process sees it: after `die()`, every call fails (the process is gone)."""

    def __init__(self, store):
        self._store = store
        self.dead = False

    def die(self):
        self.dead = True

    def __getattr__(self, name):
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute

        async def call(*args, **kwargs):
            if self.dead:
                raise RunStoreError("this process is gone")
            return await attribute(*args, **kwargs)

        return call


def flow(flow_id, second="test_hang", seconds=0.0, second_seconds=None):
    elements = {
        "s": {"type": "start", "element_id": "s"},
        "a": {"type": "test_echo", "element_id": "a", "value": "from-a", "seconds": seconds},
        "h": {"type": second, "element_id": "h", **({"seconds": second_seconds} if second_seconds else {})},
        "e": {"type": "end", "element_id": "e"},
    }
    connections = [{"from_id": "s", "to_id": "a"}, {"from_id": "a", "to_id": "h"}, {"from_id": "h", "to_id": "e"}]
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": elements,
            "connections": connections,
            "start_element_id": "s",
        },
        "initial_inputs": {"x": 1},
        "backend2_ws_url": "ws://127.0.0.1:9/ws",
    }


def coordinator(store, streamer, settings):
    return FlowCoordinatorCore(0, 1, streamer, ServiceHub(settings), store, registry=TEST_REGISTRY)


async def until(predicate, timeout=15):
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_a_coordinator_that_died_mid_run_is_replaced_by_one_that_resumes_it(store):
    settings = Settings(_env_file=None)
    flow_id = f"resume-{uuid.uuid4().hex[:6]}"
    first_store = Mortal(store)
    first = coordinator(first_store, FakeStreamer(), settings)
    assert (await first.submit(json.dumps(flow(flow_id)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _stored(store, flow_id, "element_started", "h"))
    first_store.die()  # the process is gone: it writes nothing more (its run hangs in h)

    second = coordinator(store, FakeStreamer(), settings)
    assert (await second.stats())["running"] == 1  # its first call resumed the run
    await until(lambda: _stored(store, flow_id, "flow_completed"))
    events = [json.loads(text) for text in await store.events(flow_id, 0, 5000)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert len(CALLS[f"{flow_id}/a/start"]) == 1  # completed before the crash: not run again
    assert len(CALLS[f"{flow_id}/h/start"]) == 2
    restarted = [e for e in events if e["type"] == "element_started" and e["element_id"] == "h"][-1]
    assert restarted["data"]["resumed"] is True
    snapshot = await second.status(flow_id, "alice")
    assert snapshot["status"] == "completed" and snapshot["outputs"]["echo"] == "from-a"
    assert snapshot["elements"]["h"]["attempts"] == 2
    assert await second.status(flow_id, "bob") is None  # the owner survived the crash
    for active in first.active.values():
        active.task.cancel()


async def test_a_store_that_refuses_writes_stops_the_run_loudly(store, caplog):
    settings = Settings(_env_file=None)
    streamer = FakeStreamer()
    flow_id = f"store-down-{uuid.uuid4().hex[:6]}"
    core = coordinator(store, streamer, settings)
    assert (await core.submit(json.dumps(flow(flow_id, "test_echo", seconds=0.5, second_seconds=30)).encode()))[
        "outcome"
    ] == "started"
    await until(lambda: _started(streamer, flow_id, "a"))
    original = store.commit

    async def refuse(batch):
        raise RunStoreError("run store: commit failed (sqlite): disk I/O error")

    store.commit = refuse
    try:
        await until(lambda: _completed(streamer, flow_id))
    finally:
        store.commit = original
    final = [e for e in streamer.events[flow_id] if e["type"] == "flow_completed"][0]
    assert final["data"]["status"] == "cancelled"  # Backend 2 still hears of it
    assert final["data"]["error"]["message"].startswith("store_unavailable: the run store could not be written")
    assert "the run store refused a commit" in caplog.text
    assert any(e["type"] == "element_error" and e["element_id"] == "h" for e in streamer.events[flow_id])


async def _stored(store, flow_id, kind, element_id=None):
    events = [json.loads(text) for text in await store.events(flow_id, 0, 5000)]
    return any(e["type"] == kind and (element_id is None or e.get("element_id") == element_id) for e in events)


async def _started(streamer, flow_id, element_id):
    return any(
        e["type"] == "element_started" and e.get("element_id") == element_id for e in streamer.events.get(flow_id, [])
    )


async def _completed(streamer, flow_id):
    return any(e["type"] == "flow_completed" for e in streamer.events.get(flow_id, []))


async def test_memory_goes_back_to_the_os_once_the_coordinator_has_been_quiet(store, monkeypatch):
    """A collection costs tens of milliseconds: a busy coordinator must not pay it between two
    flows, and an idle one must still pay it once."""
    # generous: a loaded box may pause between two flows
    monkeypatch.setattr("actors.coordinator.QUIET_BEFORE_RECLAIM", 3.0)
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    ids = [f"quiet-{uuid.uuid4().hex[:6]}" for _ in range(3)]
    for flow_id in ids:  # back to back: each finishes, leaving the coordinator idle, then the next starts
        assert (await core.submit(json.dumps(flow(flow_id, "test_echo")).encode()))["outcome"] == "started"
        await until(lambda flow_id=flow_id: _completed(streamer, flow_id))
        await until(lambda: _nothing_active(core))
    assert core.memory.trims == 0 and core.memory.pending == 3
    await until(lambda: _trimmed(core), timeout=10)
    assert core.memory.trims == 1 and core.memory.pending == 0


async def _nothing_active(core):
    return not core.active


async def _trimmed(core):
    return core.memory.trims > 0


async def test_a_stored_run_whose_request_no_longer_validates_is_closed_as_failed(store):
    """E.g. an element type that a newer version of the service no longer has: the run is not
    left unfinished forever; Backend 2 and the store hear why."""
    from engine.run_store import Commit, NewRun

    flow_id = f"gone-{uuid.uuid4().hex[:6]}"
    body = flow(flow_id, "test_echo")
    body["flow_definition"]["elements"]["h"]["type"] = "test_element_removed_since"
    started = json.dumps({"type": "flow_started", "flow_id": flow_id, "seq": 1, "timestamp": "t", "data": {}})
    await store.open()
    await store.create_run(NewRun(flow_id, "alice", json.dumps(body).encode(), "ws://127.0.0.1:9/ws", 0, 1.0))
    await store.commit(Commit(events=[(flow_id, 1, started)]))

    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    assert (await core.stats())["running"] == 0  # its first call looked at the unfinished runs
    final = streamer.events[flow_id][-1]
    assert final["type"] == "flow_completed" and final["seq"] == 2
    assert final["data"]["status"] == "failed" and final["data"]["error"]["error_type"] == "resume_failed"
    record = await store.get_run(flow_id)
    assert record.status == "failed" and record.finished_at is not None and record.last_seq == 2
    assert (await core.status(flow_id, "alice"))["error"]["error_type"] == "resume_failed"


class CountsCreates:
    """The store as is, counting its `create_runs` calls (one per batch is the point)."""

    def __init__(self, store):
        self._store = store
        self.batches: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def create_runs(self, new_runs):
        self.batches.append([run.flow_id for run in new_runs])
        return await self._store.create_runs(new_runs)


async def test_a_batch_of_submissions_is_recorded_in_one_write_and_answers_each_entry(store, monkeypatch, caplog):
    tag = uuid.uuid4().hex[:6]
    ok, other, broken, invalid = (f"{name}-{tag}" for name in ("ok", "other", "broken", "invalid"))
    counting = CountsCreates(store)
    core = coordinator(counting, FakeStreamer(), Settings(_env_file=None))
    real_validate = coordinator_module.validate_off_loop

    async def validate(body, settings, registry):
        if broken.encode() in body:
            raise KeyError("a bug")  # stands for a validation that crashes on one body
        return await real_validate(body, settings, registry)

    monkeypatch.setattr(coordinator_module, "validate_off_loop", validate)
    bodies = [json.dumps(flow(flow_id)).encode() for flow_id in (ok, broken, ok, other)]  # they hang: running
    bodies.append(b'{"flow_id": "' + invalid.encode() + b'"}')
    answers = await core.submit_many([(body, "alice") for body in bodies])
    assert answers[0]["outcome"] == "started" and answers[0]["flow_id"] == ok
    assert isinstance(answers[1], RuntimeError) and str(answers[1]) == "the submission failed: KeyError"
    assert answers[2] == {"outcome": "conflict", "flow_id": ok}  # the same id twice in one batch: started once
    assert answers[3]["outcome"] == "started" and answers[3]["flow_id"] == other
    assert answers[4]["outcome"] == "invalid" and answers[4]["problems"]
    assert counting.batches == [[ok, other]]  # one store write for the batch's new runs
    assert "a submission failed: KeyError" in caplog.text
    assert sorted(core.active) == sorted([ok, other])
    assert (await core.submit_many([(bodies[0], "alice")]))[0]["outcome"] == "conflict"  # still running
    for flow_id in (ok, other):
        await core.cancel(flow_id, "test over", "alice")
