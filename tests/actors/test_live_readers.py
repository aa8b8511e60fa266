"""Live readers of a run in FlowCoordinatorCore (`wait_events`, the long poll behind
`GET /flows/{id}/stream`), on memory and SQLite, without Ray: a waiting reader gets new events
as soon as they are committed, a quiet wait ends empty, readers leave nothing behind."""

import asyncio
import json
import time
import uuid

from engine.settings import Settings
from tests.actors.test_coordinator import FakeStreamer, coordinator, until
from tests.engine_doubles import flow


def slow_flow(flow_id):
    elements = {"s": {"type": "start"}, "x": {"type": "test_echo", "seconds": 0.5}, "e": {"type": "end"}}
    return flow(elements, [("s", "x"), ("x", "e")], flow_id=flow_id)


async def test_a_waiting_reader_gets_events_as_soon_as_they_are_committed(store):
    core = coordinator(store, FakeStreamer(), Settings(_env_file=None))
    flow_id = f"live-{uuid.uuid4().hex[:6]}"
    assert (await core.submit(json.dumps(slow_flow(flow_id)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _has_event(core, flow_id, "element_started", "x"))
    after = max(json.loads(t)["seq"] for t in await core.events(flow_id, 0, 100, "alice"))
    readers = [core.wait_events(flow_id, after, 100, "alice", 10) for _ in range(5)]
    t0 = time.monotonic()
    pages = await asyncio.gather(*readers)
    waited = time.monotonic() - t0
    assert waited < 5  # woken by x's completion (~0.5 s), not by the 10 s timeout
    for page in pages:
        assert json.loads(page[0])["seq"] == after + 1
        assert json.loads(page[0])["type"] == "element_completed"
    assert core._readers == {}  # nobody left waiting


async def test_a_quiet_wait_ends_empty_and_other_callers_and_unknown_flows_get_none(store):
    core = coordinator(store, FakeStreamer(), Settings(_env_file=None))
    flow_id = f"live-{uuid.uuid4().hex[:6]}"
    assert (await core.submit(json.dumps(slow_flow(flow_id)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _has_event(core, flow_id, "flow_completed", None))
    last = max(json.loads(t)["seq"] for t in await core.events(flow_id, 0, 100, "alice"))
    assert await core.wait_events(flow_id, last, 100, "alice", 0.2) == []
    assert await core.wait_events(flow_id, 0, 100, "bob", 0.2) is None
    assert await core.wait_events("no-such-flow", 0, 100, "alice", 0.2) is None
    assert core._readers == {}


async def _has_event(core, flow_id, type_, element_id):
    texts = await core.events(flow_id, 0, 500, "alice") or []
    return any(
        (e := json.loads(t))["type"] == type_ and (element_id is None or e.get("element_id") == element_id)
        for t in texts
    )
