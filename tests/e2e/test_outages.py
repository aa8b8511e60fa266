"""Through the real service: deadlines reach running work; Backend 2 dies and comes back."""

import time

import httpx
import pytest

from tests.e2e.test_e2e import llm_flow, post, seed_flow
from tests.fakes.backend2 import FakeBackend2
from tests.fixtures.sandbox import sandbox_runs
from tests.fixtures.service import free_port

pytestmark = pytest.mark.ray


def sandbox_children():
    return sandbox_runs()


def test_flow_deadline_stops_a_streaming_llm(service, backend2, fake_bedrock):
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=400, delay=0.05, max_time=1.5)
    flow_id = body["flow_id"]
    t0 = time.monotonic()
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events[-1]["data"]["status"] == "timed_out"
    assert time.monotonic() - t0 < 1.5 + 8  # the whole stream would take 20 s
    assert any(e["type"] == "llm_chunk" for e in events)
    assert fake_bedrock.wait_for_abort(fake_bedrock.streams[-1], 5.0)


def test_flow_deadline_kills_a_busy_custom_code_process(service, backend2):
    body = seed_flow(backend2)
    body["config"]["max_execution_time"] = 1.5
    body["flow_definition"]["elements"]["llm-1"] = {
        "type": "custom_code",
        "element_id": "llm-1",
        "code": "while True:\n    pass",
        "timeout_seconds": 60,
    }
    t0 = time.monotonic()
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{body['flow_id']}")
    assert events[-1]["data"]["status"] == "timed_out"
    assert time.monotonic() - t0 < 1.5 + 8  # the code's own timeout is 60 s
    deadline = time.monotonic() + 5
    while sandbox_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sandbox_children() == []


def test_backend2_killed_mid_flow_and_restarted_2s_later_gets_every_event_once_in_order(service, fake_bedrock):
    fake_bedrock.reset()
    port = free_port()
    server = FakeBackend2(port=port).start()
    try:
        body = llm_flow(server, fake_bedrock, chunks=120, delay=0.04)
        flow_id = body["flow_id"]
        assert post(service, body).status_code == 200
        server.wait_for(f"ws/{flow_id}", lambda ev: sum(e["type"] == "llm_chunk" for e in ev) >= 10)
        server.stop()
        time.sleep(2)
        server.start()
        events = server.wait_for_completion(f"ws/{flow_id}", timeout=30)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["data"]["status"] == "completed"
        chunks = "".join(e["data"]["chunk"] for e in events if e["type"] == "llm_chunk")
        completed = next(e for e in events if e["type"] == "element_completed" and e["element_id"] == "llm-1")
        assert chunks == completed["data"]["outputs"]["llm_output"]
        service_status = httpx.get(f"{service}/flows/{flow_id}").json()
        assert service_status["delivery"]["reconnects"] >= 1
        replay = httpx.get(f"{service}/flows/{flow_id}/events").json()["events"]
        assert [e["seq"] for e in replay] == [e["seq"] for e in events]
    finally:
        server.shutdown()


def test_a_flow_whose_backend2_never_comes_back_still_completes(service):
    body = seed_flow(FakeBackend2(port=free_port()))  # never started
    flow_id = body["flow_id"]
    assert post(service, body).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = httpx.get(f"{service}/flows/{flow_id}").json()
        if status["status"] == "completed":
            break
        time.sleep(0.1)
    assert status["status"] == "completed"
    assert status["delivery"]["delivered_seq"] == 0 and status["delivery"]["last_error"]
