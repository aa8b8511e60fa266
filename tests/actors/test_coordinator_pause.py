"""Paused runs in FlowCoordinatorCore on a real run store (memory and SQLite), without Ray:
pause, resume with checked inputs, a wait that times out (also after a restart), cancel while
paused."""

import asyncio
import json
import uuid

from engine.settings import Settings
from tests.actors.test_coordinator import FakeStreamer, coordinator, until
from tests.engine_doubles import flow


def waiting_flow(flow_id, **wait):
    """start → w (wait_for_input: a signature) → end."""
    wait_spec = {
        "type": "wait_for_input",
        "prompt": "sign for {who}",
        "input_schema": {"signature": {"type": "string", "required": True}},
        **wait,
    }
    elements = {"s": {"type": "start"}, "w": wait_spec, "e": {"type": "end"}}
    return flow(elements, [("s", "w"), ("w", "e")], inputs={"who": "bob"}, flow_id=flow_id)


async def paused(core, flow_id, **wait):
    assert (await core.submit(json.dumps(waiting_flow(flow_id, **wait)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _status(core, flow_id, "paused"))
    await until(lambda: _let_go(core, flow_id))  # its task ended (its last commit done, any timer set)


async def _let_go(core, flow_id):
    return flow_id not in core.active


async def _published(streamer, flow_id, kind):
    return any(e["type"] == kind for e in streamer.events.get(flow_id, []))


async def _status(core, flow_id, status):
    snapshot = await core.status(flow_id)
    return snapshot is not None and snapshot["status"] == status


async def test_a_paused_run_holds_nothing_and_resumes_with_checked_inputs(store):
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    flow_id = f"pause-{uuid.uuid4().hex[:6]}"
    await paused(core, flow_id)
    assert not core.active and not core._wakes  # no task, no timer: the run lives in the store
    snapshot = await core.status(flow_id, "alice")
    assert snapshot["waiting"][0]["prompt"] == "sign for bob"
    assert (await store.get_run(flow_id)).status == "paused"

    assert await core.resume_paused(flow_id, "w", {"signature": "0xab"}, "bob") == {"outcome": "unknown"}
    wrong = await core.resume_paused(flow_id, "w", {"signature": 7}, "alice")
    assert wrong["outcome"] == "invalid" and wrong["problems"][0]["path"] == "inputs.signature"
    missing = await core.resume_paused(flow_id, "w", {}, "alice")
    assert "required" in missing["problems"][0]["message"]
    elsewhere = await core.resume_paused(flow_id, "e", {"signature": "0xab"}, "alice")
    assert elsewhere["outcome"] == "conflict" and "waits at: w" in elsewhere["message"]
    assert (await core.status(flow_id))["status"] == "paused"  # refused resumes changed nothing

    assert await core.resume_paused(flow_id, "w", {"signature": "0xab"}, "alice") == {
        "outcome": "resumed",
        "flow_id": flow_id,
    }
    await until(lambda: _status(core, flow_id, "completed"))
    assert (await core.status(flow_id))["outputs"] == {"signature": "0xab"}
    again = await core.resume_paused(flow_id, "w", {"signature": "0xab"}, "alice")
    assert again["outcome"] == "conflict" and "completed" in again["message"]
    kinds = [e["type"] for e in streamer.events[flow_id]]
    assert kinds.count("flow_paused") == 1 and kinds.count("flow_resumed") == 1 and kinds[-1] == "flow_completed"
    seqs = [e["seq"] for e in streamer.events[flow_id]]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_cancel_reaches_a_paused_run(store):
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    flow_id = f"pause-cancel-{uuid.uuid4().hex[:6]}"
    await paused(core, flow_id)
    assert (await core.cancel(flow_id, owner="bob"))["outcome"] == "unknown"
    outcome = await core.cancel(flow_id, owner="alice")
    assert outcome["outcome"] == "cancelled" and outcome["snapshot"]["status"] == "cancelled"
    assert outcome["snapshot"]["elements"]["w"]["state"] == "cancelled"
    assert streamer.events[flow_id][-1]["data"]["status"] == "cancelled"
    assert (await core.resume_paused(flow_id, "w", {"signature": "x"}))["outcome"] == "conflict"


async def test_a_wait_times_out_even_across_a_coordinator_restart(store):
    settings = Settings(_env_file=None)
    first = coordinator(store, FakeStreamer(), settings)
    flow_id = f"pause-timeout-{uuid.uuid4().hex[:6]}"
    await paused(first, flow_id, timeout=1.5)
    assert flow_id in first._wakes
    first._cancel_wake(flow_id)  # the process is gone: its timer with it

    streamer = FakeStreamer()
    second = coordinator(store, streamer, settings)
    await second.stats()  # its first call sets the timers of the paused runs it owns
    assert flow_id in second._wakes
    await until(lambda: _status(second, flow_id, "failed"), timeout=20)
    snapshot = await second.status(flow_id)
    assert snapshot["error"]["error_type"] == "timed_out" and snapshot["error"]["element_id"] == "w"


async def test_two_resumes_at_once_continue_the_run_once(store):
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    flow_id = f"pause-twice-{uuid.uuid4().hex[:6]}"
    await paused(core, flow_id)
    answers = await asyncio.gather(
        core.resume_paused(flow_id, "w", {"signature": "first"}), core.resume_paused(flow_id, "w", {"signature": "2nd"})
    )
    assert sorted(a["outcome"] for a in answers) == ["conflict", "resumed"]
    await until(lambda: _status(core, flow_id, "completed"))
    await until(lambda: _published(streamer, flow_id, "flow_completed"))  # the status shows before the flush
    kinds = [e["type"] for e in streamer.events[flow_id]]
    assert kinds.count("flow_resumed") == 1 and kinds.count("flow_completed") == 1


async def test_a_resume_sent_as_soon_as_the_run_paused_is_not_refused(store):
    """A caller acting on `flow_paused` at once may reach the coordinator while the paused run's
    task still makes its last commit."""
    commit = store.commit

    async def slow_commit(batch):  # the paused run's last commit takes a while
        await asyncio.sleep(0.3)
        await commit(batch)

    store.commit = slow_commit
    streamer = FakeStreamer()
    core = coordinator(store, streamer, Settings(_env_file=None))
    flow_id = f"pause-quick-{uuid.uuid4().hex[:6]}"
    assert (await core.submit(json.dumps(waiting_flow(flow_id)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _status(core, flow_id, "paused"))  # the run paused; its task may not have ended
    assert (await core.resume_paused(flow_id, "w", {"signature": "0x1"}, "alice"))["outcome"] == "resumed"
    await until(lambda: _status(core, flow_id, "completed"))
    cancelled = f"pause-quick-cancel-{uuid.uuid4().hex[:6]}"
    assert (await core.submit(json.dumps(waiting_flow(cancelled)).encode(), "alice"))["outcome"] == "started"
    await until(lambda: _status(core, cancelled, "paused"))
    assert (await core.cancel(cancelled, owner="alice"))["outcome"] == "cancelled"
