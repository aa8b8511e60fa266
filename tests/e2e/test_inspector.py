"""The run inspector in a real browser (headless Debian Chromium driven by Playwright) against
the real service: node states change live, the LLM text grows, a failed element shows its
error on click, a branch not taken is `skipped`, the list shows runs, and with API keys the
page asks for one and keeps it for the tab."""

import json
import os
import re

import httpx
import pytest

from tests.e2e.test_e2e import EXAMPLES, llm_flow, new_id, post, seed_flow

pytestmark = pytest.mark.ray

STATE_TIMEOUT_MS = 30_000


def node(page, element_id):
    return page.locator(f'g.node[data-element-id="{element_id}"]')


def wait_state(page, element_id, state):
    page.wait_for_selector(f'g.node[data-element-id="{element_id}"][data-state="{state}"]', timeout=STATE_TIMEOUT_MS)


def test_a_running_llm_flow_shows_states_change_and_its_text_grow(service, backend2, fake_bedrock, page):
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=80, delay=0.05)  # ~4 s of streaming
    assert post(service, body).status_code == 200
    flow_id = body["flow_id"]
    page.goto(f"{service}/ui/flows/{flow_id}")
    wait_state(page, "llm-1", "running")
    text = page.locator('pre[data-llm-element-id="llm-1"]')
    page.wait_for_function(
        "() => document.querySelector('pre[data-llm-element-id=\"llm-1\"]').textContent.length > 0",
        timeout=STATE_TIMEOUT_MS,
    )
    early = len(text.text_content())
    page.wait_for_function(
        f"() => document.querySelector('pre[data-llm-element-id=\"llm-1\"]').textContent.length > {early + 20}",
        timeout=STATE_TIMEOUT_MS,
    )
    assert node(page, "llm-1").get_attribute("data-state") == "running"  # it grew while running
    wait_state(page, "llm-1", "completed")
    wait_state(page, "end-1", "completed")
    assert page.locator("#flow-status").text_content() == "completed"
    assert text.text_content() == "".join(f"tok{i} " for i in range(80))
    assert node(page, "start-1").get_attribute("data-state") == "completed"
    assert page.locator("#login").is_hidden()  # no API key on this deployment: no login field


def test_a_failed_element_shows_its_error_on_click_and_a_branch_not_taken_is_skipped(service, backend2, page):
    body = json.loads((EXAMPLES / "branching_case.json").read_text())
    flow_id = new_id("inspect")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    body["flow_definition"]["elements"]["broken"] = {
        "type": "selector",
        "element_id": "broken",
        "name": "Broken selector",
        "path": "no.such.field",
        "on_error": "continue",
    }
    body["flow_definition"]["connections"].append({"from_id": "start", "to_id": "broken"})
    assert post(service, body).status_code == 200
    page.goto(f"{service}/ui/flows/{flow_id}")
    wait_state(page, "broken", "failed")
    wait_state(page, "big_note", "skipped")
    assert node(page, "default_note").get_attribute("data-state") == "skipped"
    node(page, "broken").click()
    error = page.locator("#detail-error")
    error.wait_for(timeout=STATE_TIMEOUT_MS)
    assert error.text_content().startswith(
        "path_not_found: selector 'Broken selector': path 'no.such.field' has no 'no'"
    )
    assert page.locator("#detail-state").text_content() == "failed"
    edge_labels = page.locator("g.edge text").all_text_contents()
    assert {"big", "vip", "default"} <= set(edge_labels)  # branch names on the case's edges


def test_the_list_of_runs_links_to_each_run(service, backend2, page):
    body = seed_flow(backend2)
    assert post(service, body).status_code == 200
    backend2.wait_for_completion(f"ws/{body['flow_id']}")
    page.goto(f"{service}/ui")
    row = page.locator(f'tr[data-flow-id="{body["flow_id"]}"]')
    row.wait_for(timeout=STATE_TIMEOUT_MS)
    assert row.locator(".status").text_content() == "completed"
    row.locator("a").click()
    page.wait_for_url(re.compile(rf"/ui/flows/{body['flow_id']}$"))
    wait_state(page, "end-1", "completed")


@pytest.fixture(scope="module")
def keyed_service(service):
    """The same app, second deployment under a route prefix, with a key per caller."""
    from ray import serve

    import serve_app

    env = {"API_KEYS": "alice:inspector-key-alice-0001"}
    app = serve_app.FlowExecutorIngress.options(ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": env}})
    serve.run(app.bind(), name="keyed-ui", route_prefix="/keyed")
    yield f"{service}/keyed"
    serve.delete("keyed-ui")


def test_with_api_keys_the_page_asks_for_a_key_and_keeps_it_for_the_tab(keyed_service, backend2, page):
    headers = {"authorization": "Bearer inspector-key-alice-0001"}
    body = seed_flow(backend2)
    assert httpx.post(f"{keyed_service}/execute", json=body, headers=headers, timeout=30).status_code == 200
    backend2.wait_for_completion(f"ws/{body['flow_id']}")
    assert httpx.get(f"{keyed_service}/ui", timeout=10).status_code == 200  # the page itself is open
    assert httpx.get(f"{keyed_service}/flows", timeout=10).status_code == 401  # its data is not
    page.goto(f"{keyed_service}/ui")
    page.locator("#token").fill("inspector-key-alice-0001")
    page.locator("#login button").click()
    page.locator(f'tr[data-flow-id="{body["flow_id"]}"]').wait_for(timeout=STATE_TIMEOUT_MS)
    page.goto(f"{keyed_service}/ui/flows/{body['flow_id']}")  # the key stays for the tab
    wait_state(page, "end-1", "completed")


def test_events_inside_an_iteration_appear_with_their_scope(service, backend2, fake_bedrock, page):
    body = json.loads((EXAMPLES / "iteration_llm.json").read_text())
    flow_id = new_id("inspect-iter")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    fake_bedrock.reset()
    fake_bedrock.script_text([f"summary{i} " for i in range(30)], delay=0.05)
    assert post(service, body).status_code == 200
    page.goto(f"{service}/ui/flows/{flow_id}")
    wait_state(page, "each", "running")
    page.locator("#timeline li", has_text="each[2] / summarise").first.wait_for(timeout=STATE_TIMEOUT_MS)
    wait_state(page, "each", "completed")
    nested = page.locator('pre[data-scope="each[1] / summarise"]')
    assert nested.text_content() == "".join(f"summary{i} " for i in range(30))  # each run's LLM text
    node(page, "each").click()
    page.locator("#detail-state", has_text="completed").wait_for(timeout=STATE_TIMEOUT_MS)
    if os.environ.get("INSPECTOR_SCREENSHOT"):
        page.screenshot(path=os.environ["INSPECTOR_SCREENSHOT"], full_page=True)
