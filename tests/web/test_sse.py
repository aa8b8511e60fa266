"""The Server-Sent Events framing of `web.sse`: where a stream starts, replay then live, the
end at `flow_completed`, keep-alives while a run is quiet. No Ray, no HTTP."""

import json

from web.sse import event_stream, start_seq


def event(seq, type_="element_started"):
    return json.dumps({"type": type_, "flow_id": "f", "seq": seq, "timestamp": "t", "data": {"text": "a\nb"}})


def test_the_last_event_id_header_wins_over_after_seq():
    assert start_seq(3, None) == 3
    assert start_seq(3, "17") == 17
    assert start_seq(3, "not-a-seq") == 3


async def collect(stream):
    return [chunk.decode() async for chunk in stream]


async def test_replay_then_live_until_flow_completed_with_keep_alives_between():
    calls = []
    pages = [[], [event(3), event(4, "flow_completed")], [event(99)]]

    async def fetch(after, timeout):
        calls.append(after)
        return pages.pop(0)

    chunks = await collect(event_stream(fetch, 0, [event(1), event(2)]))
    assert chunks[0] == "retry: 1000\n\n"
    ids = [c.split("\n")[0] for c in chunks if c.startswith("id:")]
    assert ids == ["id: 1", "id: 2", "id: 3", "id: 4"]
    assert chunks.count(": keep-alive\n\n") == 1
    assert calls == [2, 2]  # the long poll asks after the last seq sent; nothing after flow_completed
    data = json.loads(chunks[1].split("\ndata: ")[1])
    assert data["data"]["text"] == "a\nb"  # one data line: the stored JSON escapes newlines


async def test_the_stream_ends_when_the_run_is_gone():
    async def fetch(after, timeout):
        return None

    chunks = await collect(event_stream(fetch, 5, [event(6)]))
    assert [c for c in chunks if c.startswith("id:")] == [f"id: 6\ndata: {event(6)}\n\n"]
