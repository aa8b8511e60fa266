"""Scheduler semantics with test-double elements, no Ray, no network."""

import asyncio
import time

import pytest

from engine.settings import Settings
from tests.engine_doubles import CALLS, assert_well_formed, flow, prepare_run, run_local


def by_type(events, type_):
    return [e for e in events if e.type == type_]


def of(events, element_id):
    return [e.type for e in events if e.element_id == element_id]


async def test_diamond_runs_join_after_both_and_fast_branch_does_not_wait():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "b": {"type": "test_echo", "seconds": 0.3},
            "c": {"type": "test_echo", "seconds": 0.0},
            "d": {"type": "test_echo"},
        },
        [("s", "b"), ("s", "c"), ("b", "d"), ("c", "d")],
        inputs={"x": 1},
        flow_id="diamond",
    )
    snapshot, events = await run_local(body)
    assert_well_formed(events)
    assert snapshot["status"] == "completed"
    d_start = CALLS["diamond/d/start"][-1]
    assert d_start >= CALLS["diamond/b/end"][-1]
    assert d_start >= CALLS["diamond/c/end"][-1]
    # C finished long before B did: it did not wait for a layer barrier.
    assert CALLS["diamond/b/end"][-1] - CALLS["diamond/c/end"][-1] > 0.2
    completed = [e.element_id for e in by_type(events, "element_completed")]
    assert completed.index("c") < completed.index("b") < completed.index("d")
    assert by_type(events, "element_completed")[-1].data["outputs"] == {"x": 1}


async def test_untaken_branch_is_skipped_down_the_chain_and_join_still_runs():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "r": {"type": "test_route", "port": "yes"},
            "y1": {"type": "test_echo", "value": "from-yes"},
            "n1": {"type": "test_echo"},
            "n2": {"type": "test_echo"},
            "m": {"type": "test_echo"},
        },
        [("s", "r"), ("r", "y1", "yes"), ("r", "n1", "no"), ("n1", "n2"), ("y1", "m"), ("n2", "m")],
        inputs={"q": "hi"},
    )
    snapshot, events = await run_local(body)
    assert_well_formed(events)
    assert of(events, "n1") == ["element_skipped"]
    assert of(events, "n2") == ["element_skipped"]
    assert of(events, "m") == ["element_started", "element_completed"]
    assert by_type(events, "element_completed")[-1].data["outputs"] == {"q": "hi", "echo": "from-yes"}
    assert snapshot["elements"]["n2"]["state"] == "skipped"


async def test_all_inputs_skipped_skips_the_element():
    body = flow(
        {"s": {"type": "test_echo"}, "r": {"type": "test_route", "port": "default"}, "y": {"type": "test_echo"}},
        [("s", "r"), ("r", "y", "yes")],
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert of(events, "y") == ["element_skipped"]


async def test_port_mapping_rules():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "named": {"type": "test_echo"},
            "whole": {"type": "test_echo"},
            "same": {"type": "test_echo"},
        },
        [("s", "named", "a", "renamed"), ("s", "whole", None, "everything"), ("s", "same")],
        inputs={"a": 1, "b": 2},
    )
    _, events = await run_local(body)
    outputs = {e.element_id: e.data["outputs"] for e in by_type(events, "element_completed")}
    assert outputs["named"] == {"renamed": 1}
    assert outputs["whole"] == {"everything": {"a": 1, "b": 2}}
    assert outputs["same"] == {"a": 1, "b": 2}


async def test_timeout_cancels_a_sleeping_element_at_its_deadline():
    body = flow(
        {"s": {"type": "test_echo"}, "slow": {"type": "test_echo", "seconds": 10, "timeout": 0.3}},
        [("s", "slow")],
    )
    t0 = time.monotonic()
    snapshot, events = await run_local(body)
    elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed < 5  # the element would sleep 10 s
    error = by_type(events, "element_error")[0]
    assert error.element_id == "slow" and error.data["error_type"] == "timeout"
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["element_id"] == "slow"
    assert_well_formed(events)


async def test_retry_with_backoff_succeeds_within_max_attempts():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "f": {"type": "test_flaky", "failures": 2, "retry": {"max_attempts": 3, "initial_delay": 0.01}},
        },
        [("s", "f")],
        flow_id="retry-ok",
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert snapshot["elements"]["f"]["attempts"] == 3
    assert len(CALLS["retry-ok/f/attempt"]) == 3


async def test_retry_gives_up_after_max_attempts():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "f": {"type": "test_flaky", "failures": 99, "retry": {"max_attempts": 3, "initial_delay": 0.01}},
        },
        [("s", "f")],
        flow_id="retry-give-up",
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "failed"
    assert len(CALLS["retry-give-up/f/attempt"]) == 3
    error = by_type(events, "element_error")[0]
    assert error.data["error_type"] == "throttled" and error.data["attempts"] == 3
    assert_well_formed(events)


async def test_non_transient_errors_are_not_retried():
    body = flow(
        {"s": {"type": "test_echo"}, "f": {"type": "test_fail", "retry": {"max_attempts": 5}}},
        [("s", "f")],
    )
    snapshot, events = await run_local(body)
    assert snapshot["elements"]["f"]["attempts"] == 1
    assert by_type(events, "element_error")[0].data["error_type"] == "test_failure"


async def test_on_error_continue_lets_the_flow_complete():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "f": {"type": "test_fail", "on_error": "continue"},
            "after_fail": {"type": "test_echo"},
            "ok": {"type": "test_echo", "value": 1},
        },
        [("s", "f"), ("f", "after_fail"), ("s", "ok")],
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert of(events, "f") == ["element_started", "element_error"]
    assert of(events, "after_fail") == ["element_skipped"]
    assert of(events, "ok") == ["element_started", "element_completed"]
    assert_well_formed(events)


async def test_an_error_fails_the_flow_and_cancels_running_siblings():
    body = flow(
        {"s": {"type": "test_echo"}, "f": {"type": "test_fail"}, "slow": {"type": "test_echo", "seconds": 30}},
        [("s", "f"), ("s", "slow")],
    )
    t0 = time.monotonic()
    snapshot, events = await run_local(body)
    assert time.monotonic() - t0 < 10  # the sibling would sleep 30 s
    assert snapshot["status"] == "failed"
    assert snapshot["error"] == {
        "element_id": "f",
        "error_type": "test_failure",
        "message": "boom: this element always fails",
    }
    assert by_type(events, "element_error")[-1].element_id == "slow"
    assert by_type(events, "element_error")[-1].data["error_type"] == "cancelled"
    assert snapshot["elements"]["slow"]["state"] == "cancelled"
    assert events[-1].data["status"] == "failed"
    assert_well_formed(events)


async def test_flow_deadline_ends_the_flow_timed_out():
    body = flow(
        {"s": {"type": "test_echo"}, "slow": {"type": "test_echo", "seconds": 10}, "never": {"type": "test_echo"}},
        [("s", "slow"), ("slow", "never")],
        config={"max_execution_time": 0.3},
    )
    t0 = time.monotonic()
    snapshot, events = await run_local(body)
    assert time.monotonic() - t0 < 5  # the element would sleep 10 s
    assert snapshot["status"] == "timed_out"
    assert snapshot["elements"]["never"]["state"] == "not_run"
    assert by_type(events, "element_error")[0].data["error_type"] == "timed_out"
    assert events[-1].data["status"] == "timed_out"
    assert_well_formed(events)


async def test_cancel_stops_running_work():
    events = []
    body = flow({"s": {"type": "test_echo"}, "slow": {"type": "test_echo", "seconds": 10}}, [("s", "slow")])
    run = prepare_run(body, Settings(), events.append)
    task = asyncio.create_task(run.run())
    await asyncio.sleep(0.1)
    assert run.cancel("user pressed stop")
    t0 = time.monotonic()
    snapshot = await task
    assert time.monotonic() - t0 < 5  # the element would sleep 10 s
    assert snapshot["status"] == "cancelled"
    assert snapshot["error"]["message"] == "user pressed stop"
    assert events[-1].type == "flow_completed" and events[-1].data["status"] == "cancelled"
    assert not run.cancel()
    assert_well_formed(events)


async def test_input_schema_is_checked_before_the_run_naming_the_field():
    body = flow(
        {
            "s": {"type": "test_echo"},
            "e": {"type": "test_echo", "input_schema": {"prompt": {"type": "string", "required": True}}},
        },
        [("s", "e")],
        inputs={"other": 1},
        flow_id="input-check",
    )
    snapshot, events = await run_local(body)
    error = by_type(events, "element_error")[0]
    assert error.data["error_type"] == "input_invalid"
    assert "'prompt' is required" in error.data["message"]
    assert "input-check/e/start" not in CALLS


async def test_output_schema_is_checked_after_the_run_naming_the_field():
    body = flow(
        {"s": {"type": "test_echo"}, "e": {"type": "test_echo", "output_schema": {"n": {"type": "integer"}}}},
        [("s", "e")],
        inputs={"n": "not a number"},
    )
    _, events = await run_local(body)
    error = by_type(events, "element_error")[0]
    assert error.data["error_type"] == "output_invalid"
    assert "'n' must be integer, got string" in error.data["message"]


async def test_chunks_come_between_started_and_completed_with_contiguous_index():
    body = flow({"s": {"type": "test_echo"}, "c": {"type": "test_chunks"}}, [("s", "c")])
    _, events = await run_local(body)
    types = of(events, "c")
    assert types == ["element_started", "llm_chunk", "llm_chunk", "llm_chunk", "element_completed"]
    chunks = [e.data for e in events if e.type == "llm_chunk"]
    assert [c["index"] for c in chunks] == [0, 1, 2]
    assert "".join(c["chunk"] for c in chunks) == "abc"


async def test_unreachable_elements_never_run():
    body = flow(
        {"s": {"type": "test_echo"}, "a": {"type": "test_echo"}, "island": {"type": "test_echo"}},
        [("s", "a"), ("island", "a")],
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert snapshot["elements"]["island"]["state"] == "unreachable"
    assert of(events, "a") == ["element_started", "element_completed"]


async def test_secrets_are_scrubbed_from_events():
    settings = Settings(api_key="canary-api-key-123")
    body = flow({"s": {"type": "test_echo"}}, [], inputs={"leak": "x canary-api-key-123 y"})
    _, events = await run_local(body, settings)
    assert "canary-api-key-123" not in repr([e.model_dump() for e in events])
    assert events[1].data["inputs"]["leak"] == "x *** y"


@pytest.mark.parametrize("n", [1, 5])
async def test_many_flows_concurrently_do_not_mix(n):
    bodies = [
        flow({"s": {"type": "test_echo", "seconds": 0.05}}, [], inputs={"i": i}, flow_id=f"m{i}") for i in range(n)
    ]
    results = await asyncio.gather(*(run_local(b) for b in bodies))
    for i, (snapshot, events) in enumerate(results):
        assert {e.flow_id for e in events} == {f"m{i}"}
        assert by_type(events, "element_completed")[0].data["outputs"] == {"i": i}
