"""EventOutbox / EventForwarder without Ray: prompt flushes, batching across flows, order,
final, retries."""

import asyncio
import json
import time

import pytest

from actors.event_forwarder import FLUSH_TURNS, EventOutbox
from engine.models import Event, utc_timestamp
from services.run_store import MemoryRunStore


async def outbox_of(streamer):
    """An outbox committing to an open in-memory run store."""
    store = MemoryRunStore()
    await store.open()
    return EventOutbox(streamer, store, max_event_bytes=512 * 1024, value_max_bytes=64 * 1024)


class FakeStreamer:
    """Stands in for the streamer actor handle: records `publish_many` calls."""

    def __init__(self, latency=0.0, failures=0, refuse=None):
        self.calls = []  # (arrived, entries), payloads decoded
        self.latency, self.failures, self.attempts = latency, failures, 0
        self.refuse = refuse  # a flow id whose presence makes a call fail (a permanent failure)
        self.publish_many = self

    def remote(self, entries):
        return self._call(entries)

    async def _call(self, entries):
        self.attempts += 1
        arrived = time.perf_counter()
        await asyncio.sleep(self.latency)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("streamer restarting")
        assert all(isinstance(payload, bytes) for _, _, payload, _ in entries)  # what crosses Ray
        if any(flow_id == self.refuse for flow_id, _, _, _ in entries):
            raise ValueError("this entry cannot be taken")
        self.calls.append((arrived, [(f, u, json.loads(p), final) for f, u, p, final in entries]))

    def seqs(self, flow_id):
        return [m["seq"] for _, entries in self.calls for fid, _, ms, _ in entries if fid == flow_id for m in ms]

    def finals(self, flow_id):
        return [final for _, entries in self.calls for fid, _, _, final in entries if fid == flow_id and final]


def event(seq, kind="element_completed", flow_id="f"):
    return Event(type=kind, flow_id=flow_id, seq=seq, timestamp=utc_timestamp(), element_id="e", data={})


async def test_a_flow_that_ends_at_once_is_one_entry_of_one_call():
    streamer = FakeStreamer()
    forwarder = (await outbox_of(streamer)).forwarder("f", "ws://b2/f")
    for seq in range(1, 9):
        forwarder(event(seq))
        await asyncio.sleep(0)  # the scheduler yields between elements
    await forwarder.close()
    [(_, [(flow_id, url, messages, final)])] = streamer.calls
    assert (flow_id, url, final) == ("f", "ws://b2/f", True)
    assert [m["seq"] for m in messages] == list(range(1, 9))


async def test_events_apart_in_time_leave_at_once_and_those_of_one_step_together():
    streamer = FakeStreamer()
    forwarder = (await outbox_of(streamer)).forwarder("f", "ws://b2/f")
    for seq in (1, 2, 3):  # flow_started, then tokens apart in time as a model streams them
        forwarder(event(seq, "llm_chunk"))
        for _ in range(FLUSH_TURNS + 3):  # a few loop turns, no timer: the load of the machine cannot matter
            await asyncio.sleep(0)
        assert [m["seq"] for m in streamer.calls[-1][1][0][2]] == [seq]
        await asyncio.sleep(0.02)
    forwarder(event(4))
    forwarder(event(5))  # emitted in the same step: one entry
    await forwarder.close()
    batches = [[m["seq"] for m in entries[0][2]] for _, entries in streamer.calls]
    assert batches == [[1], [2], [3], [4, 5]] and streamer.finals("f") == [True]


async def test_many_flows_share_calls_under_load_each_in_seq_order():
    streamer = FakeStreamer(latency=0.005)
    outbox = await outbox_of(streamer)
    forwarders = {f"f{i}": outbox.forwarder(f"f{i}", f"ws://b2/f{i}") for i in range(100)}
    for seq in range(1, 21):  # 100 flows streaming 20 tokens each, a token every 2 ms
        for flow_id, forwarder in forwarders.items():
            forwarder(event(seq, "llm_chunk", flow_id))
        await asyncio.sleep(0.002)
    await asyncio.gather(*(f.close() for f in forwarders.values()))
    for flow_id in forwarders:
        assert streamer.seqs(flow_id) == list(range(1, 21)) and streamer.finals(flow_id) == [True]
    assert len(streamer.calls) < 30  # 2,000 events: at most a call per step of all flows, plus the closes


async def test_close_without_pending_events_still_marks_the_flow_final():
    streamer = FakeStreamer()
    forwarder = (await outbox_of(streamer)).forwarder("f", "ws://b2/f")
    forwarder(event(1, "flow_started"))
    await asyncio.sleep(0.01)
    await forwarder.close()
    assert [entries for _, entries in streamer.calls][-1] == [("f", "ws://b2/f", [], True)]


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_failed_call_is_retried_whole(failures):
    streamer = FakeStreamer(failures=failures)
    forwarder = (await outbox_of(streamer)).forwarder("f", "ws://b2/f")
    forwarder(event(1))
    await forwarder.close()
    assert streamer.seqs("f") == [1] and streamer.finals("f") == [True]
    assert streamer.attempts == failures + 1


async def test_close_returns_even_when_the_streamer_stays_down():
    streamer = FakeStreamer(failures=99)
    forwarder = (await outbox_of(streamer)).forwarder("f", "ws://b2/f")
    forwarder(event(1))
    await asyncio.wait_for(forwarder.close(), 10)  # gives up after its attempts, never hangs
    assert streamer.calls == [] and streamer.attempts == 5


def nested(depth):
    value = "leaf"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("bad_value", ["deep", "circular"])
async def test_one_unserialisable_flow_in_a_batch_never_costs_the_others_their_events(bad_value, caplog):
    streamer = FakeStreamer()
    outbox = await outbox_of(streamer)
    forwarders = {f"f{i}": outbox.forwarder(f"f{i}", f"ws://b2/f{i}") for i in range(145)}
    circular = []
    circular.append(circular)
    for seq in range(1, 4):
        for flow_id, forwarder in forwarders.items():
            if flow_id == "f7" and seq == 2:
                data = {"outputs": {"x": nested(100_000) if bad_value == "deep" else circular}}
                forwarder(Event(type="element_completed", flow_id="f7", seq=2, timestamp=utc_timestamp(),
                                element_id="e", data=data))  # fmt: skip
            else:
                forwarder(event(seq, "llm_chunk", flow_id))
    await asyncio.gather(*(f.close() for f in forwarders.values()))
    for flow_id in forwarders:
        assert streamer.seqs(flow_id) == [1, 2, 3] and streamer.finals(flow_id) == [True]
    [stub] = [
        m for _, entries in streamer.calls for fid, _, ms, _ in entries if fid == "f7" for m in ms if m["seq"] == 2
    ]
    assert stub["type"] == "element_completed" and stub["element_id"] == "e"
    assert stub["data"]["error"]["error_type"] == "serialization_failed"
    assert "flow f7: event seq 2 could not be serialised" in caplog.text


async def test_an_entry_the_streamer_keeps_refusing_is_dropped_alone():
    streamer = FakeStreamer(refuse="poison")
    outbox = await outbox_of(streamer)
    names = ["a", "poison", "b", "c"]
    forwarders = {name: outbox.forwarder(name, f"ws://b2/{name}") for name in names}
    for name, forwarder in forwarders.items():
        forwarder(event(1, "flow_started", name))
    await asyncio.wait_for(asyncio.gather(*(f.close() for f in forwarders.values())), 20)
    for name in ("a", "b", "c"):
        assert streamer.seqs(name) == [1] and streamer.finals(name) == [True]
    assert streamer.seqs("poison") == []


async def test_events_are_in_the_store_before_the_streamer_sees_them_and_big_values_are_fitted():
    streamer = FakeStreamer()
    store = MemoryRunStore()
    await store.open()
    seen_in_store = []
    publish = streamer._call

    async def checking(entries):  # at publish time, the store already holds every event of the call
        for flow_id, _, payload, _ in entries:
            stored = [json.loads(t)["seq"] for t in await store.events(flow_id, 0, 100)]
            seen_in_store.append(all(m["seq"] in stored for m in json.loads(payload)))
        await publish(entries)

    streamer._call = checking
    outbox = EventOutbox(streamer, store, max_event_bytes=512 * 1024, value_max_bytes=64 * 1024)
    forwarder = outbox.forwarder("big", "ws://b2/big")
    forwarder(Event(type="flow_started", flow_id="big", seq=1, timestamp="t"))
    forwarder(Event(type="element_completed", flow_id="big", seq=2, timestamp="t", element_id="e",
                    data={"outputs": {"blob": "z" * 2_000_000, "small": 1}}))  # fmt: skip
    await forwarder.close()
    assert seen_in_store == [True]
    [(_, [(_, _, messages, _)])] = streamer.calls
    blob = messages[1]["data"]["outputs"]["blob"]
    assert blob["truncated"] and blob["bytes"] == 2_000_002 and blob["preview"].startswith('"zzz')
    assert json.loads((await store.events("big", 1, 10))[0])["data"]["outputs"]["blob"] == blob
