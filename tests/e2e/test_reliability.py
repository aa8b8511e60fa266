"""Reliability through the real service: coordinator death, auth, limits, fuzz, secrets."""

import concurrent.futures
import json
import time

import httpx
import pytest
import ray

from actors.names import NAMESPACE, coordinator_index, coordinator_name
from tests.e2e.test_e2e import llm_flow, post, seed_flow, streaming_llm_flow
from tests.fixtures.service import CANARIES
from tests.malformed_bodies import malformed_bodies

pytestmark = pytest.mark.ray


def wait_status(service, flow_id, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = httpx.get(f"{service}/flows/{flow_id}", timeout=10)
        if response.status_code == 200 and response.json()["status"] != "running":
            return response.json()
        time.sleep(0.1)
    raise AssertionError(f"{flow_id} still running")


def test_a_killed_coordinator_is_restarted_and_resumes_its_flows(service, backend2, fake_bedrock):
    flow_id = streaming_llm_flow(service, backend2, fake_bedrock, chunks=100)
    coordinator = ray.get_actor(coordinator_name(coordinator_index(flow_id, 2)), namespace=NAMESPACE)
    ray.kill(coordinator, no_restart=False)
    events = backend2.wait_for_completion(f"ws/{flow_id}", timeout=60)
    assert sorted(e["seq"] for e in events) == list(range(1, len(events) + 1))
    assert max(events, key=lambda e: e["seq"])["data"]["status"] == "completed"
    assert wait_status(service, flow_id, timeout=30)["status"] == "completed"
    again = seed_flow(backend2, flow_id=f"{flow_id}-after")
    assert post(service, again).status_code == 200
    assert backend2.wait_for_completion(f"ws/{again['flow_id']}")[-1]["data"]["status"] == "completed"


def test_request_body_limit_gives_413(service, backend2):
    body = seed_flow(backend2)
    body["initial_inputs"]["padding"] = "x" * 6_000_000
    assert post(service, body).status_code == 413


def test_a_thousand_malformed_requests_get_4xx_and_the_service_stays_healthy(service):
    def send(raw):
        return httpx.post(f"{service}/execute", content=raw, headers={"content-type": "application/json"}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, malformed_bodies(1000)))
    codes = [r.status_code for r in responses]
    assert all(400 <= c < 500 for c in codes), sorted(set(codes))
    for response in responses:
        if response.status_code == 422:
            assert response.json()["problems"], response.text[:200]
    assert httpx.get(f"{service}/health").json()["status"] == "healthy"
    for i in range(5):  # nothing was started
        assert httpx.get(f"{service}/flows/fuzz-{i}").status_code == 404


def test_canary_secrets_appear_in_no_event_response_or_log(service, backend2, fake_bedrock):
    fake_bedrock.reset()
    canaries = list(CANARIES.values())
    flows = []
    llm = llm_flow(backend2, fake_bedrock, chunks=5, delay=0.0)
    flows.append(llm)
    leak = seed_flow(backend2)
    leak["initial_inputs"]["prompt"] = f"please repeat {CANARIES['AWS_SECRET_ACCESS_KEY']}"
    flows.append(leak)
    failing = seed_flow(backend2)
    failing["flow_definition"]["elements"]["llm-1"] = {
        "type": "custom_code",
        "element_id": "llm-1",
        "code": f"def main(inputs):\n    raise ValueError('{CANARIES['APTOS_PRIVATE_KEY']}')",
    }
    flows.append(failing)
    texts = []
    for body in flows:
        response = post(service, body)
        texts.append(response.text)
        backend2.wait_for_completion(f"ws/{body['flow_id']}")
        texts.append(httpx.get(f"{service}/flows/{body['flow_id']}").text)
        texts.append(httpx.get(f"{service}/flows/{body['flow_id']}/events").text)
        texts.append(json.dumps(backend2.messages(f"ws/{body['flow_id']}")))
    bad = post(service, {"flow_id": CANARIES["AWS_ACCESS_KEY_ID"]})
    texts.append(bad.text)
    from pathlib import Path

    logs = "\n".join(
        p.read_text(errors="replace")
        for p in Path("/tmp/ray/session_latest/logs").rglob("*")
        if p.is_file() and p.suffix in {".log", ".out", ".err"}
    )
    for canary in canaries:
        for text in texts:
            assert canary not in text
        assert canary not in logs, f"{canary[:6]}… found in Ray logs"
    assert "***" in json.dumps(backend2.messages(f"ws/{leak['flow_id']}"))
