"""Pauses and re-runs through the real service (HTTP + Ray + SQLite run store + websockets
Backend 2 + the fake Bedrock): pause → resume; refused resumes leave the flow paused; a pause
survives a service restart; a wait times out; cancel while paused; re-runs that re-use the
original's LLM results (the fake Bedrock counts its requests)."""

import httpx
import pytest

from tests.e2e.test_durability import restart_service, wait_until
from tests.e2e.test_e2e import EXAMPLES, new_id, post

pytestmark = pytest.mark.ray

APPROVAL = {
    "type": "wait_for_input",
    "element_id": "approve",
    "prompt": "Publish this? {llm_output}",
    "input_schema": {"approved": {"type": "boolean", "required": True}},
}


def llm_then(backend2, fake_bedrock, *elements, prefix="pause"):
    """start → llm-1 (the seed's) → elements… → end, each element's outputs going on to the next."""
    import json

    body = json.loads((EXAMPLES / "seed_llm.json").read_text())
    flow_id = new_id(prefix)
    defs = body["flow_definition"]["elements"]
    chain = ["start-1", "llm-1", *(e["element_id"] for e in elements), "end-1"]
    for element in elements:
        defs[element["element_id"]] = element
    defs["end-1"]["input_schema"] = {}
    defs["end-1"]["output_schema"] = {}
    body["flow_definition"]["connections"] = [{"from_id": a, "to_id": b} for a, b in zip(chain, chain[1:])]
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    fake_bedrock.reset()
    fake_bedrock.script_text(["all ", "good"])
    return body


def status(service, flow_id):
    return httpx.get(f"{service}/flows/{flow_id}", timeout=10).json()


def resume(service, flow_id, inputs, element_id="approve"):
    return httpx.post(
        f"{service}/flows/{flow_id}/resume", json={"element_id": element_id, "inputs": inputs}, timeout=30
    )


def paused(service, backend2, body):
    assert post(service, body).status_code == 200
    flow_id = body["flow_id"]
    events = backend2.wait_for(f"ws/{flow_id}", lambda ev: any(e["type"] == "flow_paused" for e in ev), 30)
    wait_until(lambda: status(service, flow_id)["status"] == "paused", 30, "the paused status")
    return [e for e in events if e["type"] == "flow_paused"][0]


def completed(backend2, flow_id, expected="completed"):
    events = sorted(backend2.wait_for_completion(f"ws/{flow_id}", timeout=60), key=lambda e: e["seq"])
    seqs = sorted({e["seq"] for e in events})
    assert seqs == list(range(1, len(seqs) + 1)), "a seq is missing"
    assert events[-1]["type"] == "flow_completed" and events[-1]["data"]["status"] == expected, events[-1]
    return events


def test_pause_then_resume_completes_and_refused_resumes_change_nothing(service, backend2, fake_bedrock):
    body = llm_then(backend2, fake_bedrock, APPROVAL)
    flow_id = body["flow_id"]
    event = paused(service, backend2, body)
    assert event["data"]["prompt"] == "Publish this? all good"
    assert event["data"]["resume_path"] == f"/flows/{flow_id}/resume"
    snapshot = status(service, flow_id)
    assert snapshot["waiting"][0]["element_id"] == "approve" and snapshot["elements"]["approve"]["state"] == "waiting"
    history = httpx.get(f"{service}/flows", params={"status": "paused", "limit": 500}, timeout=10).json()
    assert {run["flow_id"]: run["waiting"] for run in history["runs"]}[flow_id] == ["approve"]

    wrong = resume(service, flow_id, {"approved": "yes"})
    assert wrong.status_code == 422 and wrong.json()["problems"][0]["path"] == "inputs.approved"
    assert resume(service, flow_id, {"approved": True}, element_id="llm-1").status_code == 409
    assert resume(service, new_id("nobody"), {"approved": True}).status_code == 404
    assert httpx.post(f"{service}/flows/{flow_id}/resume", json={"inputs": {}}, timeout=10).status_code == 422
    assert status(service, flow_id)["status"] == "paused"

    ok = resume(service, flow_id, {"approved": True})
    assert ok.status_code == 200 and ok.json() == {"status": "resumed", "flow_id": flow_id}
    events = completed(backend2, flow_id)
    kinds = [e["type"] for e in events]
    assert kinds.index("flow_paused") < kinds.index("flow_resumed") < kinds.index("flow_completed")
    assert events[-1]["data"]["outputs"] == {"approved": True}
    assert len(fake_bedrock.requests) == 1  # the LLM ran once, before the pause
    assert resume(service, flow_id, {"approved": True}).status_code == 409  # finished


def test_a_paused_flow_survives_a_service_restart(service, backend2, fake_bedrock):
    body = llm_then(backend2, fake_bedrock, APPROVAL, prefix="pause-restart")
    flow_id = body["flow_id"]
    paused(service, backend2, body)
    restart_service(service)
    assert status(service, flow_id)["status"] == "paused"
    assert resume(service, flow_id, {"approved": False}).status_code == 200
    events = completed(backend2, flow_id)
    assert events[-1]["data"]["outputs"] == {"approved": False}
    assert len(fake_bedrock.requests) == 1


def test_a_wait_times_out_and_a_paused_flow_can_be_cancelled(service, backend2, fake_bedrock):
    body = llm_then(backend2, fake_bedrock, {**APPROVAL, "timeout": 1}, prefix="pause-timeout")
    paused(service, backend2, body)
    events = completed(backend2, body["flow_id"], expected="failed")
    error = [e for e in events if e["type"] == "element_error"][0]
    assert error["element_id"] == "approve" and error["data"]["error_type"] == "timed_out"

    body = llm_then(backend2, fake_bedrock, APPROVAL, prefix="pause-cancel")
    paused(service, backend2, body)
    answer = httpx.post(f"{service}/flows/{body['flow_id']}/cancel", timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    completed(backend2, body["flow_id"], expected="cancelled")


def test_a_rerun_from_a_failed_custom_code_element_reuses_the_llm_result(service, backend2, fake_bedrock):
    code = {
        "type": "custom_code",
        "element_id": "code",
        "code": "def main(inputs):\n    return {'length': len(inputs['llm_output']) // 0}\n",
    }
    body = llm_then(backend2, fake_bedrock, code, prefix="rerun")
    original = body["flow_id"]
    assert post(service, body).status_code == 200
    completed(backend2, original, expected="failed")
    assert len(fake_bedrock.requests) == 1

    new = new_id("rerun-new")
    fixed = "def main(inputs):\n    return {'length': len(inputs['llm_output'])}\n"
    answer = httpx.post(
        f"{service}/flows/{original}/rerun",
        json={
            "flow_id": new,
            "backend2_ws_url": backend2.url(f"ws/{new}"),
            "element_overrides": {"code": {"code": fixed}},
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    events = completed(backend2, new)
    assert len(fake_bedrock.requests) == 1  # the LLM's result came from the original run
    llm = [e for e in events if e["type"] == "element_completed" and e["element_id"] == "llm-1"][0]
    assert llm["data"]["cached"] is True and llm["data"]["outputs"]["llm_output"] == "all good"
    assert events[-1]["data"]["outputs"] == {"length": 8}
    assert status(service, new)["rerun_of"] == original
    assert status(service, original)["status"] == "failed"  # unchanged

    again = new_id("rerun-prompt")
    answer = httpx.post(
        f"{service}/flows/{original}/rerun",
        json={
            "flow_id": again,
            "backend2_ws_url": backend2.url(f"ws/{again}"),
            "from_element": "llm-1",
            "element_overrides": {"llm-1": {"wrapper_prompt": "Say it again: {prompt}"}, "code": {"code": fixed}},
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    completed(backend2, again)
    assert len(fake_bedrock.requests) == 2  # only llm-1 (and what follows) ran again
    assert "Say it again" in str(fake_bedrock.requests[-1])
    refused = httpx.post(
        f"{service}/flows/{original}/rerun",
        json={"flow_id": new_id("x"), "backend2_ws_url": backend2.url("ws/x"), "from_element": "end-1"},
        timeout=30,
    )
    assert refused.status_code == 422 and "'code'" in refused.text
    unknown = httpx.post(
        f"{service}/flows/{new_id('none')}/rerun",
        json={"flow_id": new_id("x"), "backend2_ws_url": "ws://127.0.0.1:9/x"},
    )
    assert unknown.status_code == 404


def test_resume_and_rerun_bodies_are_held_to_the_request_limits(service):
    """Like `/execute`: the body is counted while it is read (413 past MAX_REQUEST_BYTES), and a
    malformed, misshapen or too deeply nested one is a 422 with its problems' paths."""
    flow_id = new_id("nobody")
    for route in ("resume", "rerun"):
        url = f"{service}/flows/{flow_id}/{route}"
        big = httpx.post(url, content=b'{"element_id": "w", "inputs": {"x": "' + b"y" * 5_100_000 + b'"}}', timeout=60)
        assert big.status_code == 413, route
        broken = httpx.post(url, content=b'{"element_id": ', timeout=30)
        assert broken.status_code == 422 and broken.json()["problems"], route
    deep: dict = {}
    for _ in range(150):
        deep = {"a": deep}
    answer = httpx.post(f"{service}/flows/{flow_id}/resume", json={"element_id": "w", "inputs": deep}, timeout=30)
    assert answer.status_code == 422 and "nested" in answer.text
    wrong = httpx.post(f"{service}/flows/{flow_id}/resume", json={"element_id": "", "inputs": [], "x": 1}, timeout=30)
    assert {p["path"] for p in wrong.json()["problems"]} == {"element_id", "inputs", "x"}
    rerun = httpx.post(f"{service}/flows/{flow_id}/rerun", json={"flow_id": "n"}, timeout=30)
    assert rerun.status_code == 422 and "backend2_ws_url" in {p["path"] for p in rerun.json()["problems"]}
