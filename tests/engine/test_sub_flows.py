"""Sub-flows in the scheduler: event scopes, run guards, cancel and deadlines reaching nested
runs, and resuming a run that stopped inside an iteration. No Ray, no network."""

import asyncio
import time
from collections import Counter

from engine.scheduler import InlineInvoker
from engine.settings import Settings
from tests.engine.test_resume import Store, run_durably, run_until_crash
from tests.engine_doubles import assert_well_formed, prepare_durable_run, prepare_run, run_local
from tests.nesting_flows import around, chain, sub

SETTINGS = Settings()


def scopes(events, element_id):
    return [e.scope for e in events if e.element_id == element_id and e.type == "element_completed"]


async def test_events_inside_an_iteration_carry_scope_and_share_the_flows_seqs():
    body = around({"type": "iteration", "flow": chain(("x", {"type": "test_echo"}))}, {"items": ["a", "b"]})
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert_well_formed(events)
    assert scopes(events, "x") == [[{"element_id": "n", "index": 0}], [{"element_id": "n", "index": 1}]]
    top = [e for e in events if e.scope is None]
    assert [e.element_id for e in top if e.type == "element_completed"] == ["s", "n", "e"]
    assert "scope" not in top[1].to_message()
    assert events[-1].data["outputs"]["results"][1]["item"] == "b"


async def test_nested_scopes_list_every_level_outermost_first():
    inner_iteration = {"type": "iteration", "flow": chain(("leaf", {"type": "test_echo"}))}
    body = around({"type": "sub_flow", "flow": chain(("each", inner_iteration))}, {"items": [1, 2]})
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "completed"
    assert scopes(events, "leaf") == [
        [{"element_id": "n", "index": 0}, {"element_id": "each", "index": 0}],
        [{"element_id": "n", "index": 0}, {"element_id": "each", "index": 1}],
    ]
    assert [r["item"] for r in snapshot["outputs"]["results"]] == [1, 2]


async def test_a_failing_element_inside_a_sub_flow_names_itself_in_the_flows_error():
    body = around({"type": "sub_flow", "flow": chain(("bad", {"type": "test_fail"}))})
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["element_id"] == "n"
    assert snapshot["error"]["error_type"] == "test_failure"
    assert "'bad' failed: boom" in snapshot["error"]["message"]
    inner_error = next(e for e in events if e.type == "element_error" and e.element_id == "bad")
    assert inner_error.scope == [{"element_id": "n", "index": 0}]


async def test_error_port_and_default_outputs_work_inside_a_sub_flow():
    inner = sub(
        {
            "s": {"type": "start"},
            "x": {"type": "test_fail"},
            "d": {"type": "test_fail", "on_error": "default", "default_outputs": {"v": 7}},
            "handler": {"type": "test_echo"},
            "end": {"type": "end"},
        },
        [("s", "x"), ("s", "d"), ("x", "handler", "error", "problem"), ("handler", "end"), ("d", "end")],
    )
    snapshot, _ = await run_local(around({"type": "sub_flow", "flow": inner}))
    assert snapshot["status"] == "completed"
    assert snapshot["outputs"]["v"] == 7
    assert snapshot["outputs"]["problem"]["error_type"] == "test_failure"


async def test_max_element_runs_ends_a_runaway_loop_with_a_flow_error():
    settings = Settings(max_element_runs_per_flow=50)
    body = around({"type": "loop", "max_iterations": 1000, "flow": chain(("x", {"type": "test_echo"}))})
    snapshot, events = await run_local(body, settings)
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["error_type"] == "too_many_element_runs"
    assert "MAX_ELEMENT_RUNS_PER_FLOW" in snapshot["error"]["message"]
    assert_well_formed(events)
    runs = sum(e.type == "element_started" for e in events)
    assert runs <= 50
    loop_end = [e for e in events if e.element_id == "n" and e.scope is None][-1]
    assert loop_end.type == "element_error" and loop_end.data["error_type"] == "cancelled"


async def test_the_run_guard_is_not_absorbed_by_an_iteration_that_continues_on_item_errors():
    settings = Settings(max_element_runs_per_flow=20)
    iteration = {"type": "iteration", "on_item_error": "continue", "flow": chain(("x", {"type": "test_echo"}))}
    snapshot, _ = await run_local(around(iteration, {"items": list(range(50))}), settings)
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["error_type"] == "too_many_element_runs"


class GaugeInvoker(InlineInvoker):
    """Counts the runs of each (element, item index) and the most `x` running at once."""

    def __init__(self):
        self.calls = Counter()
        self.now = 0
        self.most = 0

    async def invoke(self, element, inputs, ctx):
        self.calls[(ctx.element_id, inputs.get("index"))] += 1
        if ctx.element_id != "x":
            return await super().invoke(element, inputs, ctx)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            return await super().invoke(element, inputs, ctx)
        finally:
            self.now -= 1


async def test_cancel_in_the_middle_of_an_iteration_stops_every_running_item():
    iteration = {"type": "iteration", "parallelism": 3, "flow": chain(("x", {"type": "test_echo", "seconds": 30}))}
    events = []
    run = prepare_run(around(iteration, {"items": list(range(10))}), SETTINGS, events.append)
    task = asyncio.create_task(run.run())
    while sum(e.type == "element_started" and e.element_id == "x" for e in events) < 3:
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    run.cancel("stop it")
    snapshot = await task
    assert time.monotonic() - t0 < 5
    assert snapshot["status"] == "cancelled"
    inner_errors = [e for e in events if e.type == "element_error" and e.element_id == "x"]
    assert len(inner_errors) == 3
    assert {e.data["message"] for e in inner_errors} == {"stop it"}
    assert sorted(e.scope[0]["index"] for e in inner_errors) == [0, 1, 2]
    assert_well_formed(events)


async def test_the_flow_deadline_reaches_elements_inside_sub_flows():
    body = around(
        {"type": "sub_flow", "flow": chain(("x", {"type": "test_echo", "seconds": 30}))},
        config={"max_execution_time": 0.3},
    )
    snapshot, events = await run_local(body)
    assert snapshot["status"] == "timed_out"
    inner = next(e for e in events if e.type == "element_error" and e.element_id == "x")
    assert inner.data["error_type"] == "timed_out"


async def test_an_elements_timeout_cancels_its_sub_flow_runs():
    iteration = {
        "type": "iteration",
        "timeout": 0.3,
        "flow": chain(("x", {"type": "test_echo", "seconds": 30})),
    }
    snapshot, events = await run_local(around(iteration, {"items": [1, 2]}))
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["error_type"] == "timeout"
    inner = next(e for e in events if e.type == "element_error" and e.element_id == "x")
    assert inner.data["error_type"] == "cancelled"


class HangAtItem(GaugeInvoker):
    """`x` of item `index` hangs, like an element whose process stopped under it."""

    def __init__(self, index):
        super().__init__()
        self.index = index

    async def invoke(self, element, inputs, ctx):
        if ctx.element_id == "x" and inputs.get("index") == self.index:
            self.calls[("x", self.index)] += 1
            await asyncio.Event().wait()
        return await super().invoke(element, inputs, ctx)


async def test_a_run_stopped_inside_an_iteration_resumes_without_rerunning_finished_items():
    items = list(range(6))
    iteration = {"type": "iteration", "flow": chain(("x", {"type": "test_echo"}), ("y", {"type": "test_echo"}))}
    body = around(iteration, {"items": items}, flow_id="resume-iter")
    store = Store()
    first = HangAtItem(3)
    await run_until_crash(body, store, lambda _: first.calls[("x", 3)] > 0, first)
    assert [first.calls[("y", i)] for i in items] == [1, 1, 1, 0, 0, 0]

    kept = store.cut(len(store.events))  # what the store held when the process stopped
    second = GaugeInvoker()
    resumed = prepare_durable_run(body, SETTINGS, kept.event, kept.checkpoint, kept.resume(), second)
    snapshot = await resumed.run()
    assert snapshot["status"] == "completed"
    assert [r["item"] for r in snapshot["outputs"]["results"]] == items
    assert [second.calls[("x", i)] for i in items] == [0, 0, 0, 1, 1, 1]  # items 0-2 finished: not run again
    assert [second.calls[("y", i)] for i in items] == [0, 0, 0, 1, 1, 1]
    started_again = [e for e in kept.events if e.type == "element_started" and e.data.get("resumed")]
    assert [(e.element_id, e.scope) for e in started_again] == [
        ("n", None),
        ("x", [{"element_id": "n", "index": 3}]),
    ]
    assert [e.seq for e in kept.events] == list(range(1, len(kept.events) + 1))


async def test_finished_items_are_restored_from_their_checkpoints_when_the_run_resumes():
    iteration = {"type": "iteration", "flow": chain(("x", {"type": "test_echo"}))}
    body = around(iteration, {"items": [10, 20, 30]}, flow_id="resume-done-items")
    store = Store()
    await run_durably(body, store)
    # Keep everything up to the third item's first event: items 0 and 1 are complete.
    third_started = next(
        e.seq for e in store.events if e.scope and e.scope[0]["index"] == 2 and e.type == "element_started"
    )
    kept = store.cut(third_started - 1)
    invoker = GaugeInvoker()
    snapshot = await run_durably(body, kept, kept.resume(), invoker)
    assert snapshot["status"] == "completed"
    assert [r["item"] for r in snapshot["outputs"]["results"]] == [10, 20, 30]
    assert invoker.calls[("x", 0)] == invoker.calls[("x", 1)] == 0
    assert invoker.calls[("x", 2)] == 1
    nested_keys = {cp.element_id for cp in kept.checkpoints if "\x1f" in cp.element_id}
    assert "n\x1f2\x1fx" in nested_keys


async def test_parallelism_bounds_the_items_running_at_once():
    invoker = GaugeInvoker()
    iteration = {"type": "iteration", "parallelism": 3, "flow": chain(("x", {"type": "test_echo", "seconds": 0.02}))}
    store = Store()
    snapshot = await run_durably(around(iteration, {"items": list(range(12))}), store, invoker=invoker)
    assert snapshot["status"] == "completed"
    assert invoker.most == 3


async def test_a_run_resumes_two_levels_down_from_scoped_checkpoints():
    each = {"type": "iteration", "flow": chain(("leaf", {"type": "test_echo"}))}
    body = around({"type": "sub_flow", "flow": chain(("each", each))}, {"items": [1, 2, 3]}, flow_id="resume-deep")
    store = Store()
    await run_durably(body, store)
    keys = {cp.element_id for cp in store.checkpoints}
    assert {"n\x1f0\x1feach", "n\x1f0\x1feach\x1f2\x1fleaf"} <= keys
    third_item = next(e.seq for e in store.events if e.scope and len(e.scope) == 2 and e.scope[1]["index"] == 2)
    kept = store.cut(third_item - 1)
    invoker = GaugeInvoker()
    snapshot = await run_durably(body, kept, kept.resume(), invoker)
    assert [r["item"] for r in snapshot["outputs"]["results"]] == [1, 2, 3]
    assert [invoker.calls[("leaf", i)] for i in range(3)] == [0, 0, 1]
