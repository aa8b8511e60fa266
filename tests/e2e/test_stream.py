"""`GET /flows/{id}/stream` through the real service: Server-Sent Events replayed from the run
store then live, resumed with `Last-Event-ID`, read by many clients at once — each sees what
Backend 2 sees, in seq order."""

import concurrent.futures
import json

import httpx
import pytest

from tests.e2e.test_e2e import llm_flow, post

pytestmark = pytest.mark.ray


def read_stream(service, flow_id, headers=None, stop_after=None, params=None):
    """The events of one SSE connection, in order (`stop_after`: leave after that many)."""
    events = []
    with httpx.stream(
        "GET", f"{service}/flows/{flow_id}/stream", headers=headers or {}, params=params or {}, timeout=60
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        seq = None
        for line in response.iter_lines():
            if line.startswith("id: "):
                seq = int(line[4:])
            elif line.startswith("data: "):
                event = json.loads(line[6:])
                assert event["seq"] == seq
                events.append(event)
                if stop_after is not None and len(events) == stop_after:
                    break
    return events


def started_llm_flow(service, backend2, fake_bedrock, chunks=40, delay=0.03):
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=chunks, delay=delay)
    assert post(service, body).status_code == 200
    backend2.wait_for(f"ws/{body['flow_id']}", lambda ev: any(e["type"] == "llm_chunk" for e in ev), 30)
    return body["flow_id"]


def test_a_stream_replays_then_follows_the_run_live_until_it_completes(service, backend2, fake_bedrock):
    flow_id = started_llm_flow(service, backend2, fake_bedrock)  # joined mid-run: replay, then live
    events = read_stream(service, flow_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "flow_completed"
    delivered = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events == sorted(delivered, key=lambda e: e["seq"])  # the same envelopes Backend 2 gets
    assert sum(e["type"] == "llm_chunk" for e in events) == 40
    after = read_stream(service, flow_id, params={"after_seq": len(events) - 2})
    assert [e["seq"] for e in after] == [len(events) - 1, len(events)]  # a finished run: replay and end


def test_a_stream_resumes_after_its_last_event_id(service, backend2, fake_bedrock):
    flow_id = started_llm_flow(service, backend2, fake_bedrock)
    first = read_stream(service, flow_id, stop_after=5)
    rest = read_stream(service, flow_id, headers={"Last-Event-ID": str(first[-1]["seq"])})
    seqs = [e["seq"] for e in first + rest]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rest[-1]["type"] == "flow_completed"


def test_many_clients_read_one_run_at_once(service, backend2, fake_bedrock):
    flow_id = started_llm_flow(service, backend2, fake_bedrock, chunks=60, delay=0.03)
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        streams = list(pool.map(lambda _: read_stream(service, flow_id), range(12)))
    delivered = sorted(backend2.wait_for_completion(f"ws/{flow_id}"), key=lambda e: e["seq"])
    assert all(stream == delivered for stream in streams)


def test_a_stream_of_an_unknown_flow_is_404(service):
    assert httpx.get(f"{service}/flows/no-such-flow/stream", timeout=10).status_code == 404
