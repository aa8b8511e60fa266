"""Re-runs in FlowCoordinatorCore on a real run store (memory and SQLite), without Ray: results
upstream of `from_element` are taken from the original run (reported cached, not run again),
overrides change what runs anew, and a re-run that cannot re-use the original is refused."""

import json
import uuid

from engine.settings import Settings
from tests.actors.test_coordinator import FakeStreamer, coordinator, until
from tests.engine_doubles import CALLS, flow
from tests.nesting_flows import around, chain


def failing_flow(flow_id):
    """start → a (echo) → x (fails 5 times: without a retry policy, the flow fails there) → end."""
    elements = {
        "s": {"type": "start"},
        "a": {"type": "test_echo", "value": "A"},
        "x": {"type": "test_flaky", "failures": 5},
        "e": {"type": "end"},
    }
    return flow(elements, [("s", "a"), ("a", "x"), ("x", "e")], inputs={"q": 1}, flow_id=flow_id)


async def ended(core, flow_id):
    snapshot = await core.status(flow_id)
    return snapshot is not None and snapshot["status"] in ("completed", "failed")


async def failed_run(core):
    flow_id = f"orig-{uuid.uuid4().hex[:6]}"
    assert (await core.submit(json.dumps(failing_flow(flow_id)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: ended(core, flow_id))
    assert (await core.status(flow_id))["error"]["element_id"] == "x"
    return flow_id


async def rerun(core, original, owner="alice", **request):
    source = await core.rerun_source(original, owner)
    if source is None:
        return None
    new_id = request.pop("flow_id", f"re-{uuid.uuid4().hex[:6]}")
    body = {"flow_id": new_id, "backend2_ws_url": "ws://127.0.0.1:9/ws", **request}
    return await core.rerun(original, source, body, owner), new_id


async def test_a_rerun_from_the_failed_element_reuses_everything_before_it(store):
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    original = await failed_run(core)
    (outcome, new_id) = await rerun(core, original, element_overrides={"x": {"failures": 0}})
    assert outcome["outcome"] == "started"
    await until(lambda: ended(core, new_id))
    snapshot = await core.status(new_id)
    assert snapshot["status"] == "completed" and snapshot["rerun_of"] == original
    assert snapshot["outputs"] == {"ok": True}
    assert f"{new_id}/a/start" not in CALLS  # a's result came from the original run
    assert len(CALLS[f"{new_id}/x/attempt"]) == 1
    completed = {e["element_id"]: e["data"] for e in streamer.events[new_id] if e["type"] == "element_completed"}
    assert completed["a"].get("cached") is True and completed["s"].get("cached") is True
    assert "cached" not in completed["x"]
    assert (await core.status(original))["status"] == "failed"  # the original is unchanged


async def test_a_rerun_from_an_earlier_element_runs_it_and_what_follows_with_its_override(store):
    core = coordinator(store, FakeStreamer(), Settings(_env_file=None))
    original = await failed_run(core)
    outcome, new_id = await rerun(
        core, original, from_element="a", element_overrides={"a": {"value": "A2"}, "x": {"failures": 0}}
    )
    assert outcome["outcome"] == "started"
    await until(lambda: ended(core, new_id))
    assert (await core.status(new_id))["status"] == "completed"
    assert (await core.element(new_id, "a"))["outputs"]["echo"] == "A2"
    assert len(CALLS[f"{new_id}/a/start"]) == 1


async def test_a_rerun_that_cannot_reuse_the_original_is_refused_with_every_problem(store):
    core = coordinator(store, FakeStreamer(), Settings(_env_file=None))
    original = await failed_run(core)
    assert await rerun(core, original, owner="bob") is None
    outcome, _ = await rerun(core, original, from_element="e", element_overrides={"nope": {}, "x": {"type": "end"}})
    paths = sorted(p["path"] for p in outcome["problems"])
    assert outcome["outcome"] == "invalid"
    assert paths == ["element_overrides.nope", "element_overrides.x.type"]
    outcome, _ = await rerun(core, original, from_element="e")
    assert outcome["outcome"] == "invalid"
    assert "'x' is not downstream of 'e' but ended failed" in outcome["problems"][0]["message"]
    outcome, _ = await rerun(core, original, element_overrides={"x": {"failures": "many"}})
    assert outcome["outcome"] == "invalid" and "failures" in outcome["problems"][0]["path"]
    outcome, _ = await rerun(core, original, flow_id=original)
    assert outcome["outcome"] == "started"  # a finished run of the same owner is replaced, as with /execute


async def test_a_rerun_from_inside_a_sub_flow_is_refused_naming_the_element_that_holds_it(store):
    core = coordinator(store, FakeStreamer(), Settings(_env_file=None))
    flow_id = f"orig-{uuid.uuid4().hex[:6]}"
    inner = chain(("x", {"type": "test_flaky", "failures": 5}))
    body = around({"type": "iteration", "flow": inner}, {"items": [1, 2]}, flow_id=flow_id)
    assert (await core.submit(json.dumps(body).encode(), "alice"))["outcome"] == "started"
    await until(lambda: ended(core, flow_id))
    checkpoints = {cp.element_id: cp.state for cp in await store.checkpoints(flow_id)}
    assert checkpoints["n\x1f0\x1fx"] == "failed"  # the inner element's checkpoint, under its scoped key
    assert checkpoints["n"] == "failed"
    outcome, _ = await rerun(core, flow_id, from_element="x")
    assert outcome["outcome"] == "invalid"
    assert outcome["problems"][0]["message"].startswith("'x' is inside the sub-flow of 'n'")
    outcome, new_id = await rerun(core, flow_id, element_overrides={"n": {"items_input": "none"}})
    assert outcome["outcome"] == "started"  # from the failed element itself: its sub-flow runs anew
    await until(lambda: ended(core, new_id))
    assert (await core.status(new_id))["error"]["error_type"] == "input_invalid"
