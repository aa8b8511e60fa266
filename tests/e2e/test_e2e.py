"""The service end to end: real Ray Serve, HTTP, coordinators, streamer, websockets Backend 2."""

import concurrent.futures
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.sandbox import sandbox_runs
from tests.fixtures.service import free_port
from tests.ray_state import wait_for_tasks
from tests.schema_checks import flow_problems

pytestmark = pytest.mark.ray

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def new_id(prefix="flow"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def seed_flow(backend2, flow_id=None, **changes):
    """The seed's example with a data_block standing in for llm_text (own tests cover the LLM)."""
    body = json.loads((EXAMPLES / "seed_llm.json").read_text())
    flow_id = flow_id or new_id("seed")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["flow_definition"]["elements"]["llm-1"] = {
        "type": "data_block",
        "element_id": "llm-1",
        "name": "Stand-in",
        "data": {"llm_output": "Fine, thanks!"},
    }
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    body.update(changes)
    return body


def post(service, body, **kwargs):
    """POST /execute; a body the service accepts (200) must match the published flow schema too
    (bodies a test sends to be refused are not held to it)."""
    response = httpx.post(f"{service}/execute", json=body, timeout=30, **kwargs)
    if response.status_code == 200:
        problems = flow_problems(body)
        assert not problems, f"the service accepted a body its flow schema refuses: {problems}"
    return response


def test_health_and_docs(service):
    health = httpx.get(f"{service}/health").json()
    assert health["status"] == "healthy" and health["coordinators"] == 2  # the session's COORDINATOR_COUNT
    assert httpx.get(f"{service}/docs").status_code == 200
    spec = httpx.get(f"{service}/openapi.json").json()
    assert {
        "/execute",
        "/validate",
        "/health",
        "/flows/{flow_id}",
        "/flows/{flow_id}/events",
        "/flows/{flow_id}/cancel",
        "/flows/{flow_id}/resume",
        "/flows/{flow_id}/rerun",
        "/flows/{flow_id}/stream",
        "/flows/{flow_id}/definition",
        "/schemas/flow",
        "/schemas/events",
    } <= set(spec["paths"])
    flow_schema = httpx.get(f"{service}/schemas/flow").json()
    branches = {branch["$ref"] for branch in flow_schema["$defs"]["ElementDefinition"]["oneOf"]}
    assert {f"#/$defs/element.{name}" for name in ("iteration", "loop", "sub_flow", "llm_text", "case")} <= branches
    events = httpx.get(f"{service}/schemas/events").json()
    assert "llm_chunk" in json.dumps(events["oneOf"])


def test_health_reports_the_sandbox_isolation_level(service):
    deadline = time.monotonic() + 60
    while (level := httpx.get(f"{service}/health").json()["custom_code_isolation"]) == "unknown":
        assert time.monotonic() < deadline, "the sandbox never reported its isolation level"
        time.sleep(0.5)
    assert level in ("namespaces+seccomp", "landlock+seccomp"), level  # an OS layer, never `none`


def test_seed_flow_streams_every_event_in_order(service, backend2):
    body = seed_flow(backend2)
    flow_id = body["flow_id"]
    t0 = time.monotonic()
    response = post(service, body)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "started" and response.json()["flow_id"] == flow_id
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert time.monotonic() - t0 < 10
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "flow_started" and events[-1]["type"] == "flow_completed"
    assert events[-1]["data"]["status"] == "completed"
    assert events[-1]["data"]["outputs"] == {"text_output": "Fine, thanks!"}
    types = [(e["type"], e.get("element_id")) for e in events]
    assert ("element_started", "llm-1") in types and ("element_completed", "end-1") in types
    assert len(backend2.messages(f"ws/{flow_id}")) == len(events)  # nothing sent twice


def test_status_and_event_replay(service, backend2):
    body = seed_flow(backend2)
    flow_id = body["flow_id"]
    assert post(service, body).status_code == 200
    streamed = backend2.wait_for_completion(f"ws/{flow_id}")
    status = httpx.get(f"{service}/flows/{flow_id}").json()
    assert status["status"] == "completed"
    assert status["outputs"] == {"text_output": "Fine, thanks!"}
    assert set(status["elements"]) == {"start-1", "llm-1", "end-1"}
    assert all(e["state"] == "completed" for e in status["elements"].values())
    assert status["last_seq"] == len(streamed)
    replay = httpx.get(f"{service}/flows/{flow_id}/events", params={"after_seq": 2}).json()["events"]
    assert replay == streamed[2:]
    assert httpx.get(f"{service}/flows/nope-{uuid.uuid4().hex}").status_code == 404
    assert httpx.get(f"{service}/flows/{flow_id}/events", params={"after_seq": "x"}).status_code == 422


def test_invalid_flows_get_422_with_every_problem_and_nothing_starts(service, backend2):
    body = seed_flow(backend2)
    flow_id = body["flow_id"]
    body["flow_definition"]["elements"]["llm-1"]["type"] = "teleport"
    body["flow_definition"]["connections"].append({"from_id": "end-1", "to_id": "ghost"})
    body["backend2_ws_url"] = "http://not-a-websocket"
    response = post(service, body)
    assert response.status_code == 422
    paths = {p["path"] for p in response.json()["problems"]}
    assert {
        "flow_definition.elements.llm-1.type",
        "flow_definition.connections[2].to_id",
        "backend2_ws_url",
    } <= paths
    assert httpx.get(f"{service}/flows/{flow_id}").status_code == 404
    cycle = seed_flow(backend2)
    cycle["flow_definition"]["connections"].append({"from_id": "end-1", "to_id": "llm-1"})
    problems = post(service, cycle).json()["problems"]
    assert any("cycle: " in p["message"] for p in problems)
    bad = httpx.post(f"{service}/execute", content=b"{oops", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "not valid JSON" in bad.json()["problems"][0]["message"]


def test_validate_checks_without_running(service, backend2):
    body = seed_flow(backend2)
    body["flow_definition"]["elements"]["orphan"] = {"type": "data_block", "element_id": "orphan", "data": {}}
    answer = httpx.post(f"{service}/validate", json=body)
    assert answer.status_code == 200 and answer.json()["status"] == "valid"
    assert [w["path"] for w in answer.json()["warnings"]] == ["flow_definition.elements.orphan"]
    body["flow_definition"]["elements"]["llm-1"]["type"] = "teleport"
    refused = httpx.post(f"{service}/validate", json=body)
    assert refused.status_code == 422
    errors = [p["path"] for p in refused.json()["problems"] if p["severity"] == "error"]
    assert errors == ["flow_definition.elements.llm-1.type"]
    assert httpx.post(f"{service}/validate", content=b"x" * 6_000_000).status_code == 413
    assert httpx.get(f"{service}/flows/{body['flow_id']}").status_code == 404  # nothing ran
    assert backend2.messages(f"ws/{body['flow_id']}") == []


def test_a_running_flow_id_gets_409(service, backend2, fake_bedrock):
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=40, delay=0.05)
    assert post(service, body).status_code == 200
    again = post(service, body)
    assert again.status_code == 409
    backend2.wait_for_completion(f"ws/{body['flow_id']}")


def llm_flow(backend2, fake_bedrock, chunks=10, delay=0.02, flow_id=None, max_time=60):
    body = json.loads((EXAMPLES / "seed_llm.json").read_text())
    flow_id = flow_id or new_id("llm")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    body["config"]["max_execution_time"] = max_time
    fake_bedrock.script_text([f"tok{i} " for i in range(chunks)], delay=delay)
    return body


def streaming_llm_flow(service, backend2, fake_bedrock, chunks):
    """Post an LLM flow of `chunks` tokens 50 ms apart; returns its id once a token arrived."""
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=chunks, delay=0.05)
    assert post(service, body).status_code == 200
    backend2.wait_for(f"ws/{body['flow_id']}", lambda ev: any(e["type"] == "llm_chunk" for e in ev))
    return body["flow_id"]


def test_cancel_stops_a_running_flow(service, backend2, fake_bedrock):
    flow_id = streaming_llm_flow(service, backend2, fake_bedrock, chunks=200)
    t0 = time.monotonic()
    response = httpx.post(f"{service}/flows/{flow_id}/cancel", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert time.monotonic() - t0 < 5  # the stream alone would take 10 s
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events[-1]["data"]["status"] == "cancelled"
    assert any(e["type"] == "element_error" and e["data"]["error_type"] == "cancelled" for e in events)
    assert httpx.post(f"{service}/flows/{flow_id}/cancel").status_code == 409


def test_twenty_concurrent_flows_each_get_their_own_stream(service, backend2):
    bodies = [seed_flow(backend2) for _ in range(20)]
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda b: post(service, b).status_code, bodies))
    assert codes == [200] * 20
    for body in bodies:
        events = backend2.wait_for_completion(f"ws/{body['flow_id']}")
        assert {e["flow_id"] for e in events} == {body["flow_id"]}
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["data"]["outputs"] == {"text_output": "Fine, thanks!"}


def test_backend2_not_listening_at_start_still_completes_and_is_replayable(service, backend2):
    body = seed_flow(backend2)
    flow_id = body["flow_id"]
    body["backend2_ws_url"] = f"ws://127.0.0.1:{free_port()}/ws/{flow_id}"
    assert post(service, body).status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status = httpx.get(f"{service}/flows/{flow_id}").json()
        if status["status"] != "running":
            break
        time.sleep(0.05)
    assert status["status"] == "completed"
    assert status["delivery"]["delivered_seq"] == 0
    events = httpx.get(f"{service}/flows/{flow_id}/events").json()["events"]
    assert events[0]["type"] == "flow_started" and events[-1]["type"] == "flow_completed"


def custom_code_flow(backend2, flow_id, code, **config):
    """The seed's flow with custom_code `code` in place of llm_text."""
    body = seed_flow(backend2, flow_id=flow_id)
    body["flow_definition"]["elements"]["llm-1"] = {
        "type": "custom_code",
        "element_id": "llm-1",
        "code": code,
        **config,
    }
    return body


def test_custom_code_runs_in_the_sandbox_actor_under_its_flow_and_element_name(service, backend2, dashboard_url):
    flow_id = new_id("code")
    body = custom_code_flow(backend2, flow_id, "def main(inputs):\n    return {'llm_output': inputs['prompt'].upper()}")
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events[-1]["data"]["outputs"] == {"text_output": "HELLO, HOW ARE YOU TODAY?"}
    names = {t.name for t in wait_for_tasks(dashboard_url, f"{flow_id}/llm-1")}
    assert names == {f"{flow_id}/llm-1"}


def test_cancel_kills_a_busy_custom_code_process(service, backend2):
    import psutil

    flow_id = new_id("busy")
    body = custom_code_flow(backend2, flow_id, "while True:\n    pass", timeout_seconds=60)
    assert post(service, body).status_code == 200
    backend2.wait_for(
        f"ws/{flow_id}", lambda ev: any(e["type"] == "element_started" and e["element_id"] == "llm-1" for e in ev)
    )
    deadline = time.monotonic() + 30
    while not (children := sandbox_runs()):
        assert time.monotonic() < deadline, "the custom code should be running in a forked child"
        time.sleep(0.1)
    t0 = time.monotonic()
    assert httpx.post(f"{service}/flows/{flow_id}/cancel", timeout=10).json()["status"] == "cancelled"
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive and time.monotonic() - t0 < 10  # the code itself would run for its whole limit
