"""Waiting in the scheduler: a run pauses at `wait_for_input`, resumes with an answer, times out,
is cancelled while paused; a re-run reports its restored elements as cached. No Ray, no network.
"""

from engine.run_store import ElementCheckpoint
from engine.scheduler import Resume
from engine.settings import Settings
from tests.engine.test_resume import CountingInvoker, Store
from tests.engine_doubles import flow, prepare_durable_run

SETTINGS = Settings()


def approval(**wait):
    """start → a (echo) → w (wait_for_input) → e (end); and start → b (echo) on a branch of its own."""
    return flow(
        {
            "s": {"type": "start"},
            "a": {"type": "test_echo", "value": "answer-a"},
            "b": {"type": "test_echo", "value": "side"},
            "w": {
                "type": "wait_for_input",
                "prompt": "approve {echo} for {who}?",
                "input_schema": {"approved": {"type": "boolean", "required": True}},
                **wait,
            },
            "e": {"type": "end"},
        },
        [("s", "a"), ("s", "b"), ("a", "w"), ("w", "e")],
        inputs={"who": "ann"},
    )


async def run(body, store, resume=None, cancel=False):
    invoker = CountingInvoker()
    flow_run = prepare_durable_run(body, SETTINGS, store.event, store.checkpoint, resume, invoker)
    if cancel:
        flow_run.cancel("cancelled by request")
    return await flow_run.run(), invoker


def types(events):
    return [(e.type, e.element_id) for e in events]


async def test_a_run_pauses_at_the_wait_once_nothing_else_can_run():
    store = Store()
    snapshot, _ = await run(approval(), store)
    assert snapshot["status"] == "paused" and snapshot["finished_at"] is None
    assert snapshot["elements"]["w"]["state"] == "waiting"
    assert snapshot["elements"]["b"]["state"] == "completed"  # the other branch ran to its end first
    assert snapshot["elements"]["e"]["state"] == "pending"
    (waiting,) = snapshot["waiting"]
    assert waiting == {
        "element_id": "w",
        "prompt": "approve answer-a for ann?",
        "input_schema": {"approved": {"type": "boolean", "required": True}},
        "resume_path": "/flows/f-1/resume",
        "wake_at": None,
    }
    events = store.events
    assert events[-1].type == "flow_paused" and events[-1].data == waiting
    assert ("flow_completed", None) not in types(events)
    assert [c.state for c in store.checkpoints if c.element_id == "w"] == ["waiting"]


async def test_a_resumed_run_completes_the_wait_with_the_answer_without_running_anything_again():
    store = Store()
    await run(approval(), store)
    answer = {"approved": True, "note": "fine"}
    resume = Resume(store.checkpoints, store.events[-1].seq, answers={"w": answer})
    snapshot, invoker = await run(approval(), store, resume)
    assert snapshot["status"] == "completed" and snapshot["outputs"] == answer
    assert invoker.calls == {"e": 1}  # a and b settled from their checkpoints
    after = store.events[store.events.index([e for e in store.events if e.type == "flow_paused"][-1]) + 1 :]
    assert types(after) == [
        ("flow_resumed", "w"),
        ("element_completed", "w"),
        ("element_started", "e"),
        ("element_completed", "e"),
        ("flow_completed", None),
    ]
    assert after[0].data == {"element_id": "w", "inputs": answer}
    assert [e.seq for e in store.events] == list(range(1, len(store.events) + 1))


async def test_a_resume_without_an_answer_for_it_leaves_the_element_waiting_silently():
    store = Store()
    await run(approval(), store)
    paused_at = len(store.events)
    snapshot, _ = await run(approval(), store, Resume(store.checkpoints, store.events[-1].seq))
    assert snapshot["status"] == "paused" and snapshot["waiting"][0]["prompt"] == "approve answer-a for ann?"
    assert types(store.events[paused_at:]) == [("flow_paused", "w")]


async def test_a_wait_that_timed_out_fails_the_flow_or_goes_on_with_on_error_continue():
    for on_error, status in (("fail", "failed"), ("continue", "completed")):
        store = Store()
        await run(approval(timeout=5, on_error=on_error), store)
        assert store.events[-1].data["wake_at"] is not None
        resume = Resume(store.checkpoints, store.events[-1].seq, expired=frozenset({"w"}))
        snapshot, _ = await run(approval(timeout=5, on_error=on_error), store, resume)
        assert snapshot["status"] == status
        error = [e for e in store.events if e.type == "element_error"][0]
        assert error.element_id == "w" and error.data["error_type"] == "timed_out"
        assert "5 s" in error.data["message"]


async def test_cancelling_a_paused_run_cancels_its_waiting_element():
    store = Store()
    await run(approval(), store)
    snapshot, invoker = await run(approval(), store, Resume(store.checkpoints, store.events[-1].seq), cancel=True)
    assert snapshot["status"] == "cancelled" and not invoker.calls
    assert snapshot["elements"]["w"]["state"] == "cancelled"
    assert types(store.events[-2:]) == [("element_error", "w"), ("flow_completed", None)]
    assert "waiting" not in snapshot


async def test_a_prompt_placeholder_without_data_fails_the_element_instead_of_waiting():
    store = Store()
    body = approval(prompt="approve {nothing}?")
    snapshot, _ = await run(body, store)
    assert snapshot["status"] == "failed" and snapshot["error"]["element_id"] == "w"
    assert snapshot["error"]["error_type"] == "missing_placeholder"


async def test_a_re_run_reports_the_results_it_reuses_as_cached():
    store = Store()
    body = flow(
        {"s": {"type": "start"}, "a": {"type": "test_echo", "value": "A"}, "e": {"type": "end"}},
        [("s", "a"), ("a", "e")],
    )
    await run(body, store)
    reused = [c for c in store.checkpoints if c.element_id in ("s", "a")]
    again = Store()
    snapshot, invoker = await run(body, again, Resume(reused, 0, cached=True))
    assert snapshot["status"] == "completed" and invoker.calls == {"e": 1}
    completed = {e.element_id: e.data for e in again.events if e.type == "element_completed"}
    assert completed["a"]["cached"] is True and completed["a"]["outputs"] == {"echo": "A"}
    assert "cached" not in completed["e"]
    assert types(again.events)[0] == ("flow_started", None)
    assert isinstance(reused[0], ElementCheckpoint)


def test_connections_into_a_wait_are_not_held_to_its_input_schema():
    """Its input_schema describes the resume; what arrives fills the prompt."""
    from tests.engine_doubles import validate_request

    body = approval()
    body["flow_definition"]["connections"][2]["to_input"] = "draft"  # a → w, an input the schema does not list
    assert validate_request(body, SETTINGS).ok
    body["flow_definition"]["elements"]["e"]["input_schema"] = {"approved": {"type": "boolean"}}
    body["flow_definition"]["connections"][3]["to_input"] = "draft"  # w → e: e's schema still applies
    problems = validate_request(body, SETTINGS).problems
    assert [p.path for p in problems] == ["flow_definition.connections[3].to_input"]
