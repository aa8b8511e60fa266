"""Durable runs through the real service (SQLite run store, websockets Backend 2, fake Bedrock):
the streamer killed mid-stream, every coordinator killed mid-stream, the whole service stopped
and started again — each time 0 events lost, seqs contiguous, the flow completes, and elements
that had settled are not run again (the fake Bedrock counts its requests)."""

import json
import time

import httpx
import pytest
import ray

from actors.names import NAMESPACE, coordinator_index, coordinator_name, streamer_name
from actors.sandbox import sandbox_actors
from tests.e2e.test_e2e import EXAMPLES, new_id, post

pytestmark = pytest.mark.ray


def two_llm_flow(backend2, fake_bedrock, chunks=60, delay=0.05):
    """start → llm-a → llm-b → end, each LLM streaming `chunks` tokens `delay` s apart."""
    body = json.loads((EXAMPLES / "seed_llm.json").read_text())
    flow_id = new_id("durable")
    elements = body["flow_definition"]["elements"]
    first = dict(elements.pop("llm-1"), element_id="llm-a")
    second = dict(
        first,
        element_id="llm-b",
        wrapper_prompt="Summarise: {llm_output}",
        input_schema={"llm_output": {"type": "string", "required": True}},
    )
    elements.update({"llm-a": first, "llm-b": second})
    body["flow_definition"]["connections"] = [
        {"from_id": "start-1", "to_id": "llm-a"},
        {"from_id": "llm-a", "to_id": "llm-b"},
        {"from_id": "llm-b", "to_id": "end-1", "from_output": "llm_output", "to_input": "text_input"},
    ]
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    body["config"]["max_execution_time"] = 120
    fake_bedrock.reset()
    fake_bedrock.script_text([f"tok{i} " for i in range(chunks)], delay=delay)
    return body


def start_and_wait_for_second_llm(service, backend2, body):
    assert post(service, body).status_code == 200, body["flow_id"]
    path = f"ws/{body['flow_id']}"
    backend2.wait_for(path, lambda ev: any(e["type"] == "llm_chunk" and e["element_id"] == "llm-b" for e in ev), 30)
    return path


def assert_complete_and_contiguous(backend2, path, timeout=60):
    events = backend2.wait_for_completion(path, timeout=timeout)
    seqs = sorted(e["seq"] for e in events)
    assert seqs == list(range(1, len(seqs) + 1)), "a seq is missing"
    final = max(events, key=lambda e: e["seq"])
    assert final["type"] == "flow_completed" and final["data"]["status"] == "completed", final
    return sorted(events, key=lambda e: e["seq"])


def wait_until(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_killing_the_streamer_mid_stream_loses_no_event(service, backend2, fake_bedrock):
    body = two_llm_flow(backend2, fake_bedrock)
    path = start_and_wait_for_second_llm(service, backend2, body)
    its_streamer = streamer_name(coordinator_index(body["flow_id"], 2))  # the streamer of the flow's coordinator
    ray.kill(ray.get_actor(its_streamer, namespace=NAMESPACE), no_restart=False)
    events = assert_complete_and_contiguous(backend2, path)
    assert sum(e["type"] == "llm_chunk" for e in events) == 120  # every token of both elements
    assert len(fake_bedrock.requests) == 2  # nothing ran twice: only delivery was interrupted


def test_killing_every_coordinator_mid_stream_resumes_without_rerunning_settled_elements(
    service, backend2, fake_bedrock
):
    body = two_llm_flow(backend2, fake_bedrock)
    path = start_and_wait_for_second_llm(service, backend2, body)
    for index in range(2):
        ray.kill(ray.get_actor(coordinator_name(index), namespace=NAMESPACE), no_restart=False)
    events = assert_complete_and_contiguous(backend2, path)
    started = [e for e in events if e["type"] == "element_started"]
    assert [e["element_id"] for e in started].count("llm-a") == 1  # settled before the crash: not re-run
    resumed = [e for e in started if e["element_id"] == "llm-b" and e["data"].get("resumed")]
    assert len(resumed) == 1  # running at the crash: re-run, and says so
    assert len(fake_bedrock.requests) == 3  # llm-a once, llm-b twice
    final = httpx.get(f"{service}/flows/{body['flow_id']}", timeout=10).json()
    assert final["status"] == "completed" and final["elements"]["llm-b"]["attempts"] == 2


POOL = [coordinator_name(0), coordinator_name(1), streamer_name(0), streamer_name(1)]  # COORDINATOR_COUNT=2


def restart_service(service):
    """Stop the whole service — ingress, coordinators, streamer, sandbox — and start it again
    on the same run store, as Ctrl-C of `serve run` and starting it again would."""
    from ray import serve

    import serve_app

    serve.delete("flow-executor")
    for name in POOL:
        try:
            ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        except ValueError:  # not created in this session
            pass
    for sandbox in sandbox_actors().values():  # one per node
        ray.kill(sandbox, no_restart=True)
    for name in POOL:
        wait_until(lambda n=name: _gone(n), 30, f"{name} to stop")
    serve.run(serve_app.app, name="flow-executor", route_prefix="/")
    wait_until(lambda: _healthy(service), 60, "the service to answer again")


def _gone(name):
    try:
        ray.get_actor(name, namespace=NAMESPACE)
        return False
    except ValueError:
        return True


def _healthy(service):
    try:
        return httpx.get(f"{service}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_service_restart_resumes_unfinished_runs_and_keeps_their_history(service, backend2, fake_bedrock):
    """(Runs that had finished survive a restart too: the store's contract tests reopen it. Here
    the session's retention is 8 s, shorter than a restart, so the run checked is the resumed one.)"""
    body = two_llm_flow(backend2, fake_bedrock, chunks=300)  # llm-b streams 15 s: the restart lands mid-stream
    path = start_and_wait_for_second_llm(service, backend2, body)
    restart_service(service)
    events = assert_complete_and_contiguous(backend2, path, timeout=120)
    assert [e["element_id"] for e in events if e["type"] == "element_started"].count("llm-a") == 1
    assert len(fake_bedrock.requests) == 3
    flow_id = body["flow_id"]
    status = httpx.get(f"{service}/flows/{flow_id}", timeout=10)
    assert status.status_code == 200 and status.json()["status"] == "completed"
    page = httpx.get(f"{service}/flows/{flow_id}/events", params={"limit": 5000}, timeout=10).json()
    assert [e["seq"] for e in page["events"]] == list(range(1, len(page["events"]) + 1))  # before and after
    assert page["events"][-1]["type"] == "flow_completed"
    history = httpx.get(f"{service}/flows", params={"limit": 500}, timeout=10).json()
    assert flow_id in {run["flow_id"] for run in history["runs"]}
