"""EventOutbox / EventForwarder without Ray: prompt flushes, batching across flows, order,
final, retries."""

import asyncio
import time

import pytest

from actors.event_forwarder import FLUSH_TURNS, EventOutbox
from engine.models import Event, utc_timestamp


class FakeStreamer:
    """Stands in for the streamer actor handle: records `publish_many` calls."""

    def __init__(self, latency=0.0, failures=0):
        self.calls = []  # (arrived, entries)
        self.latency, self.failures, self.attempts = latency, failures, 0
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
        self.calls.append((arrived, entries))

    def seqs(self, flow_id):
        return [m["seq"] for _, entries in self.calls for fid, _, ms, _ in entries if fid == flow_id for m in ms]

    def finals(self, flow_id):
        return [final for _, entries in self.calls for fid, _, _, final in entries if fid == flow_id and final]


def event(seq, kind="element_completed", flow_id="f"):
    return Event(type=kind, flow_id=flow_id, seq=seq, timestamp=utc_timestamp(), element_id="e", data={})


async def test_a_flow_that_ends_at_once_is_one_entry_of_one_call():
    streamer = FakeStreamer()
    forwarder = EventOutbox(streamer).forwarder("f", "ws://b2/f")
    for seq in range(1, 9):
        forwarder(event(seq))
        await asyncio.sleep(0)  # the scheduler yields between elements
    await forwarder.close()
    [(_, [(flow_id, url, messages, final)])] = streamer.calls
    assert (flow_id, url, final) == ("f", "ws://b2/f", True)
    assert [m["seq"] for m in messages] == list(range(1, 9))


async def test_events_apart_in_time_leave_at_once_and_those_of_one_step_together():
    streamer = FakeStreamer()
    forwarder = EventOutbox(streamer).forwarder("f", "ws://b2/f")
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
    outbox = EventOutbox(streamer)
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
    forwarder = EventOutbox(streamer).forwarder("f", "ws://b2/f")
    forwarder(event(1, "flow_started"))
    await asyncio.sleep(0.01)
    await forwarder.close()
    assert [entries for _, entries in streamer.calls][-1] == [("f", "ws://b2/f", [], True)]


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_failed_call_is_retried_whole(failures):
    streamer = FakeStreamer(failures=failures)
    forwarder = EventOutbox(streamer).forwarder("f", "ws://b2/f")
    forwarder(event(1))
    await forwarder.close()
    assert streamer.seqs("f") == [1] and streamer.finals("f") == [True]
    assert streamer.attempts == failures + 1


async def test_close_returns_even_when_the_streamer_stays_down():
    streamer = FakeStreamer(failures=99)
    forwarder = EventOutbox(streamer).forwarder("f", "ws://b2/f")
    forwarder(event(1))
    await asyncio.wait_for(forwarder.close(), 10)  # gives up after its attempts, never hangs
    assert streamer.calls == [] and streamer.attempts == 5
