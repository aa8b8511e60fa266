"""Iterations through the real service (HTTP, Ray, websockets Backend 2, fake Bedrock, SQLite
run store): an LLM per item with bounded parallelism and scoped events, cancel in the middle of
an iteration, and coordinators killed mid-iteration resuming without re-running finished items."""

import json
import time

import httpx
import pytest
import ray

from actors.names import NAMESPACE, coordinator_name
from tests.e2e.test_durability import assert_complete_and_contiguous
from tests.e2e.test_e2e import EXAMPLES, new_id, post

pytestmark = pytest.mark.ray


def ticket_flow(backend2, fake_bedrock, items, parallelism, chunks, delay):
    """The iteration example (an `llm_text` per ticket, its index carried to the result)."""
    body = json.loads((EXAMPLES / "iteration_llm.json").read_text())
    flow_id = new_id("iter")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    body["initial_inputs"] = {"tickets": items}
    each = body["flow_definition"]["elements"]["each"]
    each["parallelism"] = parallelism
    each["on_item_error"] = "fail"
    body["config"]["max_execution_time"] = 120
    fake_bedrock.reset()
    fake_bedrock.script_text([f"t{i} " for i in range(chunks)], delay=delay)
    return body


def prompts_per_ticket(fake_bedrock, items):
    """How many Bedrock requests asked about each ticket."""
    bodies = [json.dumps(request.body) for request in fake_bedrock.requests]
    return [sum(f'in one line: {item}"' in body for body in bodies) for item in items]


def test_an_llm_per_item_streams_with_bounded_parallelism_and_scoped_events(service, backend2, fake_bedrock):
    items = [f"ticket number {i}" for i in range(20)]
    body = ticket_flow(backend2, fake_bedrock, items, parallelism=5, chunks=8, delay=0.03)
    assert post(service, body).status_code == 200
    events = assert_complete_and_contiguous(backend2, f"ws/{body['flow_id']}")
    summaries = events[-1]["data"]["outputs"]["summaries"]
    assert [s["ticket"] for s in summaries] == list(range(20))  # item order
    assert all(s["summary"] == "".join(f"t{i} " for i in range(8)) for s in summaries)
    assert len(fake_bedrock.requests) == 20
    assert 2 <= fake_bedrock.most_streams_at_once() <= 5
    chunks = [e for e in events if e["type"] == "llm_chunk"]
    assert len(chunks) == 20 * 8
    assert all(c["element_id"] == "summarise" and len(c["scope"]) == 1 for c in chunks)
    assert {c["scope"][0]["index"] for c in chunks} == set(range(20))
    for event in events:
        if event["type"] == "element_started" and event["element_id"] == "summarise":
            index = event["scope"][0]["index"]
            assert event["scope"] == [{"element_id": "each", "index": index}]
            assert event["data"]["inputs"]["item"] == items[index]
    assert all("scope" not in e for e in events if e.get("element_id") in ("start", "each", "end"))


def test_cancel_in_the_middle_of_an_iteration_stops_every_running_item(service, backend2, fake_bedrock):
    body = ticket_flow(backend2, fake_bedrock, [f"t{i}" for i in range(10)], parallelism=3, chunks=400, delay=0.05)
    path = f"ws/{body['flow_id']}"
    assert post(service, body).status_code == 200
    backend2.wait_for(path, lambda ev: len({e["scope"][0]["index"] for e in ev if e["type"] == "llm_chunk"}) == 3, 30)
    t0 = time.monotonic()
    response = httpx.post(f"{service}/flows/{body['flow_id']}/cancel", timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert time.monotonic() - t0 < 5
    events = backend2.wait_for_completion(path, timeout=30)
    assert events[-1]["data"]["status"] == "cancelled"
    cancelled = [e for e in events if e["type"] == "element_error" and e["element_id"] == "summarise"]
    assert sorted(e["scope"][0]["index"] for e in cancelled) == [0, 1, 2]
    assert all(fake_bedrock.wait_for_abort(fake_bedrock.wait_for_stream(index=i), 10) for i in range(3))
    assert len(fake_bedrock.requests) == 3  # nothing started after the cancel


def test_coordinators_killed_mid_iteration_resume_without_rerunning_finished_items(service, backend2, fake_bedrock):
    items = [f"item-{i}" for i in range(6)]
    body = ticket_flow(backend2, fake_bedrock, items, parallelism=1, chunks=20, delay=0.05)  # ~1 s per item
    path = f"ws/{body['flow_id']}"
    assert post(service, body).status_code == 200
    backend2.wait_for(path, lambda ev: any(e["type"] == "llm_chunk" and e["scope"][0]["index"] == 3 for e in ev), 60)
    for index in range(2):
        ray.kill(ray.get_actor(coordinator_name(index), namespace=NAMESPACE), no_restart=False)
    events = assert_complete_and_contiguous(backend2, path, timeout=90)
    assert [s["ticket"] for s in events[-1]["data"]["outputs"]["summaries"]] == list(range(6))
    assert prompts_per_ticket(fake_bedrock, items) == [1, 1, 1, 2, 1, 1]  # item 3 was streaming: it runs again
    resumed = [e for e in events if e["type"] == "element_started" and e["data"].get("resumed")]
    assert [(e["element_id"], e.get("scope")) for e in resumed] == [
        ("each", None),
        ("summarise", [{"element_id": "each", "index": 3}]),
    ]
