"""Durable runs in the scheduler: checkpoints out, and resuming a run from its checkpoints.

A "crash" keeps only what a store committing checkpoints and events together would hold when
the process stopped: the `Store` below stops recording at `crash()`, or a log is cut after one
of its events. No Ray, no network.
"""

import asyncio
import contextlib
import time
from collections import Counter

import pytest

from engine.run_store import ElementCheckpoint
from engine.scheduler import InlineInvoker, Resume
from engine.settings import Settings
from tests.engine_doubles import CALLS, assert_well_formed, flow, prepare_durable_run

SETTINGS = Settings()


class Store:
    """Checkpoints and events in the order they came, as one log; nothing more after `crash()`."""

    def __init__(self):
        self.log = []
        self.alive = True

    def checkpoint(self, checkpoint):
        if self.alive:
            self.log.append(checkpoint)

    def event(self, event):
        if self.alive:
            self.log.append(event)

    def crash(self):
        self.alive = False

    @property
    def checkpoints(self):
        return [item for item in self.log if isinstance(item, ElementCheckpoint)]

    @property
    def events(self):
        return [item for item in self.log if not isinstance(item, ElementCheckpoint)]

    def resume(self):
        return Resume(checkpoints=self.checkpoints, last_seq=self.events[-1].seq if self.events else 0)

    def cut(self, n_events):
        """The store as it was when its first `n_events` events (and their checkpoints) were committed."""
        kept = Store()
        seen = 0
        for item in self.log:
            if seen == n_events:
                break
            kept.log.append(item)
            seen += not isinstance(item, ElementCheckpoint)
        return kept


class CountingInvoker(InlineInvoker):
    """Counts the attempts each element is invoked for."""

    def __init__(self):
        self.calls = Counter()

    async def invoke(self, element, inputs, ctx):
        self.calls[ctx.element_id] += 1
        return await super().invoke(element, inputs, ctx)


async def run_durably(body, store, resume=None, invoker=None):
    run = prepare_durable_run(body, SETTINGS, store.event, store.checkpoint, resume, invoker or CountingInvoker())
    return await run.run()


async def run_until_done(body):
    store = Store()
    snapshot = await run_durably(body, store)
    return store, snapshot


async def run_until_crash(body, store, crashed, invoker=None):
    """Runs `body` until `crashed(store)` holds, then stops the process under it."""
    invoker = invoker or CountingInvoker()
    run = prepare_durable_run(body, SETTINGS, store.event, store.checkpoint, None, invoker)
    task = asyncio.create_task(run.run())
    deadline = time.monotonic() + 5
    while not crashed(store):
        assert time.monotonic() < deadline, "the run never reached the crash point"
        await asyncio.sleep(0.005)
    store.crash()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return invoker


def settled(store, *element_ids):
    states = {cp.element_id: cp.state for cp in store.checkpoints}
    return all(states.get(eid) not in (None, "running") for eid in element_ids)


def running(store, element_id):
    return any(cp.element_id == element_id and cp.state == "running" for cp in store.checkpoints)


def of(events, element_id):
    return [e.type for e in events if e.element_id == element_id]


def states(snapshot):
    return {eid: element["state"] for eid, element in snapshot["elements"].items()}


def rich_flow(flow_id, m_type="test_echo"):
    """Branches of a route and a case (one taken each), a failure that continues, a retry, a
    fan-in into `end`, an unreachable element; `m` (after the taken route branch) of `m_type`."""
    return flow(
        {
            "s": {"type": "start"},
            "r": {"type": "test_route", "port": "yes"},
            "y": {"type": "test_echo", "value": "y"},
            "n": {"type": "test_echo"},
            "m": {"type": m_type},
            "f": {"type": "test_fail", "on_error": "continue"},
            "after_f": {"type": "test_echo"},
            "c": {
                "type": "case",
                "cases": [{"id": "big", "conditions": [{"field": "x", "operator": ">", "value": 9}]}],
            },
            "big": {"type": "test_echo", "value": "big"},
            "small": {"type": "test_echo"},
            "k": {"type": "test_flaky", "failures": 1, "retry": {"max_attempts": 2, "initial_delay": 0.01}},
            "island": {"type": "test_echo"},
            "e": {"type": "end"},
        },
        [
            ("s", "r"),
            ("r", "y", "yes"),
            ("r", "n", "no"),
            ("y", "m"),
            ("n", "m"),
            ("s", "f"),
            ("f", "after_f"),
            ("s", "c"),
            ("c", "big", "big"),
            ("c", "small", "default"),
            ("s", "k"),
            ("island", "y"),
            ("m", "e", None, "main"),
            ("big", "e", None, "side"),
            ("small", "e"),
            ("after_f", "e"),
            ("k", "e", "ok", "retried"),
        ],
        inputs={"x": 10},
        flow_id=flow_id,
    )


# -- checkpoints out -----------------------------------------------------------------------------


async def test_every_checkpoint_comes_just_before_its_event_and_in_order():
    store = Store()
    await run_durably(rich_flow("cp-order"), store)
    expected = {
        "element_started": "running",
        "element_completed": "completed",
        "element_error": "failed",
        "element_skipped": "skipped",
    }
    for index, item in enumerate(store.log):
        if isinstance(item, ElementCheckpoint) or item.type not in expected:
            continue
        before = store.log[index - 1]
        assert isinstance(before, ElementCheckpoint), f"{item.type} of {item.element_id} came without its checkpoint"
        assert (before.element_id, before.state) == (item.element_id, expected[item.type])
    by_element = {}
    for cp in store.checkpoints:
        by_element.setdefault(cp.element_id, []).append(cp)
    assert "island" not in by_element  # unreachable: no checkpoint
    assert [(cp.state, cp.attempts) for cp in by_element["k"]] == [("running", 1), ("running", 2), ("completed", 2)]
    assert [cp.state for cp in by_element["n"]] == ["skipped"]
    r_done = by_element["r"][-1]
    assert (r_done.state, r_done.ports, r_done.outputs) == ("completed", ["yes"], {"x": 10})
    assert by_element["c"][-1].ports == ["big"]
    assert by_element["y"][-1].ports is None and by_element["y"][-1].outputs == {"x": 10, "echo": "y"}
    f_done = by_element["f"][-1]
    assert (f_done.state, f_done.attempts, f_done.error["error_type"]) == ("failed", 1, "test_failure")
    assert by_element["s"][0].started_at is not None and by_element["s"][-1].duration_ms is not None


# -- resuming after a crash ------------------------------------------------------------------------


def diamond(flow_id, slow_type="test_hang"):
    return flow(
        {
            "s": {"type": "start"},
            "a": {"type": "test_echo", "value": "a"},
            "h": {"type": slow_type},
            "b": {"type": "test_echo"},
            "d": {"type": "test_echo"},
            "e": {"type": "end"},
        },
        [("s", "a"), ("a", "h"), ("s", "b", None, "side"), ("h", "d"), ("b", "d"), ("d", "e")],
        inputs={"x": 1},
        flow_id=flow_id,
    )


async def test_a_crashed_run_resumes_where_it_stopped_without_rerunning_settled_elements():
    _, reference = await run_until_done(diamond("diamond-ref", slow_type="test_echo"))
    store = Store()
    first = await run_until_crash(
        diamond("diamond-crash"), store, lambda st: settled(st, "a", "b") and running(st, "h")
    )
    assert first.calls == {"s": 1, "a": 1, "b": 1, "h": 1}
    stored_b = next(cp for cp in store.checkpoints if cp.element_id == "b" and cp.state == "completed")

    resumed = Store()
    invoker = CountingInvoker()
    snapshot = await run_durably(diamond("diamond-crash"), resumed, store.resume(), invoker)

    assert invoker.calls == {"h": 1, "d": 1, "e": 1}  # s, a and b are not run again
    assert len(CALLS["diamond-crash/a/start"]) == 1 and len(CALLS["diamond-crash/h/start"]) == 2
    assert_well_formed(store.events + resumed.events)  # seqs contiguous across both parts
    assert resumed.events[0].seq == store.events[-1].seq + 1
    assert "flow_started" not in [e.type for e in resumed.events]
    started = [e for e in resumed.events if e.type == "element_started"]
    assert [(e.element_id, e.data.get("resumed")) for e in started] == [("h", True), ("d", None), ("e", None)]
    assert snapshot["status"] == "completed" and snapshot["outputs"] == reference["outputs"]
    assert snapshot["outputs"] == {"x": 1, "echo": "a", "side": {"x": 1}}
    assert snapshot["elements"]["h"]["attempts"] == 2
    assert [cp.attempts for cp in resumed.checkpoints if cp.element_id == "h"] == [2, 2]
    b = snapshot["elements"]["b"]
    assert (b["state"], b["attempts"], b["started_at"], b["duration_ms"]) == (
        "completed",
        1,
        stored_b.started_at,
        stored_b.duration_ms,
    )
    assert snapshot["last_seq"] == resumed.events[-1].seq


async def test_restored_routing_keeps_untaken_branches_skipped():
    _, reference = await run_until_done(rich_flow("route-ref"))
    store = Store()

    def crash_point(st):
        return settled(st, "small", "big", "after_f", "k") and running(st, "m")

    await run_until_crash(rich_flow("route-crash", m_type="test_hang"), store, crash_point)
    assert {cp.element_id: cp.state for cp in store.checkpoints if cp.state != "running"} == {
        "s": "completed",
        "r": "completed",
        "y": "completed",
        "n": "skipped",
        "f": "failed",
        "after_f": "skipped",
        "c": "completed",
        "big": "completed",
        "small": "skipped",
        "k": "completed",
    }

    resumed = Store()
    invoker = CountingInvoker()
    snapshot = await run_durably(rich_flow("route-crash", m_type="test_hang"), resumed, store.resume(), invoker)

    assert invoker.calls == {"m": 1, "e": 1}
    assert {e.element_id for e in resumed.events if e.element_id} == {"m", "e"}  # the rest restored silently
    assert states(snapshot) == states(reference)
    assert states(snapshot)["n"] == "skipped" and states(snapshot)["small"] == "skipped"
    assert snapshot["outputs"] == reference["outputs"]
    assert snapshot["outputs"]["side"]["matched_case"] == "big"
    assert_well_formed(store.events + resumed.events)


async def test_a_failure_that_continues_is_restored_as_it_was():
    def body(flow_id):
        return flow(
            {
                "s": {"type": "start"},
                "f": {"type": "test_fail", "on_error": "continue"},
                "after_f": {"type": "test_echo"},
                "h": {"type": "test_hang"},
                "e": {"type": "end"},
            },
            [("s", "f"), ("f", "after_f"), ("s", "h"), ("h", "e"), ("after_f", "e")],
            inputs={"x": 1},
            flow_id=flow_id,
        )

    store = Store()
    await run_until_crash(body("continue-crash"), store, lambda st: settled(st, "after_f") and running(st, "h"))
    resumed = Store()
    invoker = CountingInvoker()
    snapshot = await run_durably(body("continue-crash"), resumed, store.resume(), invoker)

    assert invoker.calls == {"h": 1, "e": 1}
    assert of(resumed.events, "f") == [] and of(resumed.events, "after_f") == []
    assert snapshot["status"] == "completed" and snapshot["outputs"] == {"x": 1}
    f = snapshot["elements"]["f"]
    assert (f["state"], f["attempts"], f["error"]["error_type"]) == ("failed", 1, "test_failure")
    assert snapshot["elements"]["after_f"]["state"] == "skipped"
    assert_well_formed(store.events + resumed.events)


async def test_a_run_stopped_after_its_last_element_only_completes():
    store, reference = await run_until_done(diamond("all-settled", slow_type="test_echo"))
    assert store.events[-1].type == "flow_completed"
    cut = store.cut(len(store.events) - 1)  # everything but flow_completed
    resumed = Store()
    invoker = CountingInvoker()
    snapshot = await run_durably(diamond("all-settled", slow_type="test_echo"), resumed, cut.resume(), invoker)

    assert invoker.calls == {}
    assert [e.type for e in resumed.events] == ["flow_completed"]
    assert resumed.checkpoints == []
    assert resumed.events[0].seq == store.events[-1].seq
    assert resumed.events[0].data["outputs"] == reference["outputs"] == snapshot["outputs"]
    assert snapshot["status"] == "completed" and states(snapshot) == states(reference)


async def test_a_failing_run_resumes_to_its_failure_and_starts_nothing_more():
    body = flow(
        {"s": {"type": "start"}, "f": {"type": "test_fail"}, "slow": {"type": "test_echo", "seconds": 30}},
        [("s", "f"), ("s", "slow")],
        flow_id="failing",
    )
    store, reference = await run_until_done(body)
    seen = [(e.type, e.element_id) for e in store.events]
    # the store holds f's failure and slow's start, not slow's cancellation
    cut = store.cut(max(seen.index(("element_error", "f")), seen.index(("element_started", "slow"))) + 1)
    assert ("element_error", "slow") not in [(e.type, e.element_id) for e in cut.events]
    resumed = Store()
    invoker = CountingInvoker()
    t0 = time.monotonic()
    snapshot = await run_durably(body, resumed, cut.resume(), invoker)

    assert time.monotonic() - t0 < 5 and invoker.calls == {}
    assert [(cp.element_id, cp.state) for cp in resumed.checkpoints] == [("slow", "cancelled")]
    assert [(e.type, e.element_id) for e in resumed.events] == [("element_error", "slow"), ("flow_completed", None)]
    assert snapshot["status"] == "failed" and snapshot["error"] == reference["error"]
    assert states(snapshot) == states(reference)
    assert_well_formed(cut.events + resumed.events)


def settle_events(events):
    """Each element's events other than `element_started`, in order."""
    found = {}
    for e in events:
        if e.element_id and e.type != "element_started":
            found.setdefault(e.element_id, []).append(e.type)
    return found


async def test_a_run_cut_after_any_event_resumes_to_the_same_end():
    store, reference = await run_until_done(rich_flow("cut-anywhere"))
    assert reference["status"] == "completed"
    for n_events in range(len(store.events)):
        cut = store.cut(n_events)
        resumed = Store()
        invoker = CountingInvoker()
        snapshot = await run_durably(rich_flow("cut-anywhere"), resumed, cut.resume(), invoker)
        last = {cp.element_id: cp for cp in cut.checkpoints}
        interrupted = {eid for eid, cp in last.items() if cp.state == "running"}
        restored = last.keys() - interrupted

        where = f"cut after {n_events} events"
        assert_well_formed(cut.events + resumed.events)
        assert snapshot["outputs"] == reference["outputs"], where
        assert states(snapshot) == states(reference), where
        assert not restored & invoker.calls.keys(), where
        assert not restored & {e.element_id for e in resumed.events}, where
        assert settle_events(cut.events + resumed.events) == settle_events(store.events), where
        for e in resumed.events:
            if e.type == "element_started":
                assert e.data.get("resumed", False) == (e.element_id in interrupted), where
        for eid in interrupted:
            assert snapshot["elements"][eid]["attempts"] == last[eid].attempts + 1, where
        for eid in restored:  # state, attempts, timings and error as stored
            assert snapshot["elements"][eid] == reference["elements"][eid], where


async def test_a_resumed_run_keeps_its_start_time_and_gets_its_whole_deadline_again():
    def body(seconds):
        return flow(
            {"s": {"type": "start"}, "slow": {"type": "test_echo", "seconds": seconds}},
            [("s", "slow")],
            config={"max_execution_time": 0.5},
            flow_id="deadline",
        )

    stored = [
        ElementCheckpoint("s", "completed", {"x": 1}, attempts=1),
        ElementCheckpoint("slow", "running", attempts=1),
    ]
    resume = Resume(checkpoints=stored, last_seq=4, started_at="2020-01-01T00:00:00.000Z")
    store = Store()
    snapshot = await run_durably(body(0.3), store, resume)
    assert snapshot["status"] == "completed" and snapshot["started_at"] == "2020-01-01T00:00:00.000Z"
    assert [e.seq for e in store.events] == [5, 6, 7]
    assert store.events[0].data == {"type": "test_echo", "name": "slow", "inputs": {"x": 1}, "resumed": True}
    t0 = time.monotonic()
    snapshot = await run_durably(body(10), Store(), resume)
    assert snapshot["status"] == "timed_out" and 0.5 <= time.monotonic() - t0 < 5


async def test_checkpoints_of_elements_not_in_the_flow_are_refused():
    resume = Resume(checkpoints=[ElementCheckpoint("ghost", "completed", outputs={})], last_seq=3)
    with pytest.raises(ValueError, match="ghost"):
        prepare_durable_run(diamond("ghost"), SETTINGS, lambda e: None, lambda c: None, resume)


async def test_the_last_checkpoint_of_an_element_counts():
    resume = Resume(
        checkpoints=[ElementCheckpoint("s", "running", attempts=1), ElementCheckpoint("s", "completed", {"x": 1})],
        last_seq=2,
    )
    assert resume.latest()["s"].state == "completed"
    with pytest.raises(ValueError):
        Resume(last_seq=-1)
