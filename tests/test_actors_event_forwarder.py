"""EventForwarder without Ray: batching, the prompt first flush, order, final, retries."""

import asyncio
import time

import pytest

from actors.event_forwarder import FLUSH_DELAY, EventForwarder
from engine.models import Event, utc_timestamp


class _Method:
    def __init__(self, calls, name, latency=0.0, failures=0):
        self.calls, self.name, self.latency, self.failures = calls, name, latency, failures

    def remote(self, *args):
        return self._call(args)

    attempts = 0

    async def _call(self, args):
        self.attempts += 1
        arrived = time.perf_counter()
        await asyncio.sleep(self.latency)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("streamer restarting")
        self.calls.append((self.name, arrived, args))


class FakeStreamer:
    """Stands in for the streamer actor handle: records publish/finish calls."""

    def __init__(self, latency=0.0, failures=0):
        self.calls = []
        self.publish = _Method(self.calls, "publish", latency, failures)
        self.finish = _Method(self.calls, "finish", latency)

    def published(self):
        return [(args[2], args[3]) for name, _, args in self.calls if name == "publish"]


def event(seq, kind="element_completed"):
    return Event(type=kind, flow_id="f", seq=seq, timestamp=utc_timestamp(), element_id="e", data={})


async def test_a_flow_that_ends_at_once_is_one_final_publish():
    streamer = FakeStreamer()
    forwarder = EventForwarder(streamer, "f", "ws://b2/f")
    for seq in range(1, 9):
        forwarder(event(seq))
        await asyncio.sleep(0)  # the scheduler yields between elements
    await forwarder.close()
    [(batch, final)] = streamer.published()
    assert [m["seq"] for m in batch] == list(range(1, 9)) and final
    assert [name for name, *_ in streamer.calls] == ["publish"]  # no separate finish


async def test_the_first_event_leaves_without_the_batching_delay():
    streamer = FakeStreamer()
    forwarder = EventForwarder(streamer, "f", "ws://b2/f")
    t0 = time.perf_counter()
    forwarder(event(1, "flow_started"))
    await asyncio.sleep(0.05)  # the flow is busy (an LLM call, say)
    (_, arrived, args) = streamer.calls[0]
    assert [m["seq"] for m in args[2]] == [1] and arrived - t0 < FLUSH_DELAY
    forwarder(event(2))
    forwarder(event(3))
    await asyncio.sleep(FLUSH_DELAY / 2)
    assert len(streamer.calls) == 1  # later events wait for the batching window
    await forwarder.close()
    assert [[m["seq"] for m in batch] for batch, _ in streamer.published()] == [[1], [2, 3]]
    assert streamer.published()[-1][1] is True


async def test_one_publish_in_flight_keeps_batches_in_order():
    streamer = FakeStreamer(latency=0.01)
    forwarder = EventForwarder(streamer, "f", "ws://b2/f")
    for seq in range(1, 201):
        forwarder(event(seq))
        if seq % 20 == 0:
            await asyncio.sleep(0.003)
    await forwarder.close()
    seqs = [m["seq"] for batch, _ in streamer.published() for m in batch]
    assert seqs == list(range(1, 201))
    assert 1 < len(streamer.published()) < 200  # batched, not one call per event


async def test_close_without_pending_events_sends_finish():
    streamer = FakeStreamer()
    forwarder = EventForwarder(streamer, "f", "ws://b2/f")
    forwarder(event(1, "flow_started"))
    await asyncio.sleep(0.01)
    await forwarder.close()
    assert [name for name, *_ in streamer.calls] == ["publish", "finish"]


@pytest.mark.parametrize("failures", [1, 3])
async def test_a_failed_publish_is_retried(failures):
    streamer = FakeStreamer(failures=failures)
    forwarder = EventForwarder(streamer, "f", "ws://b2/f")
    forwarder(event(1))
    await forwarder.close()
    [(batch, final)] = streamer.published()
    assert [m["seq"] for m in batch] == [1] and final
    assert streamer.publish.attempts == failures + 1
