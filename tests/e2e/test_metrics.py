"""Service metrics reach Ray's metrics agent (Prometheus text), as the dashboard reads them."""

import re
import time

import httpx
import pytest

from tests.e2e.test_e2e import post, seed_flow

pytestmark = pytest.mark.ray


def metric_total(text: str, name: str, **tags) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        if all(f'{k}="{v}"' in line for k, v in tags.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_flow_element_and_delivery_metrics_are_exported(service, backend2, metrics_url):
    def read():
        return httpx.get(metrics_url, timeout=10).text

    before = read()
    bodies = [seed_flow(backend2) for _ in range(3)]
    for body in bodies:
        assert post(service, body).status_code == 200
    for body in bodies:
        backend2.wait_for_completion(f"ws/{body['flow_id']}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = read()
        done = metric_total(text, "ray_flow_executor_flows_completed", status="completed")
        delivered = metric_total(text, "ray_flow_executor_events_delivered")
        if done - metric_total(before, "ray_flow_executor_flows_completed", status="completed") >= 3 and delivered:
            break
        time.sleep(0.5)
    assert metric_total(text, "ray_flow_executor_flows_started") >= 3
    assert done - metric_total(before, "ray_flow_executor_flows_completed", status="completed") >= 3
    assert metric_total(text, "ray_flow_executor_element_duration_ms_count", type="data_block") >= 3
    assert metric_total(text, "ray_flow_executor_events_delivered") > 0
    assert re.search(r"ray_flow_executor_element_duration_ms_bucket\{", text)
