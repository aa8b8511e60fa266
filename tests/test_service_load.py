"""5,000 flows in a row: coordinator and streamer memory return to their start, no fd growth."""

import asyncio
import time
import uuid

import httpx
import pytest
import ray

from actors.directory import NAMESPACE, STREAMER_NAME, coordinator_name

pytestmark = pytest.mark.ray

FLOWS = 5000
RETENTION_WAIT = 8 + 5 + 3  # EVENT_RETENTION_SECONDS + the streamer's sweep interval + slack


def tiny_flow(flow_id, url):
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": {
                "s": {"type": "start", "element_id": "s"},
                "d": {"type": "data_block", "element_id": "d", "data": {"v": 1}},
                "e": {"type": "end", "element_id": "e"},
            },
            "connections": [{"from_id": "s", "to_id": "d"}, {"from_id": "d", "to_id": "e"}],
            "start_element_id": "s",
        },
        "backend2_ws_url": url,
    }


async def post_flows(service, backend2, count, clients=16):
    ids = [f"load-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    queue = list(ids)
    async with httpx.AsyncClient(base_url=service, timeout=60, limits=httpx.Limits(max_connections=clients)) as http:

        async def worker():
            while queue:
                flow_id = queue.pop()
                response = await http.post("/execute", json=tiny_flow(flow_id, backend2.url(f"ws/{flow_id}")))
                assert response.status_code == 200, response.text

        await asyncio.gather(*(worker() for _ in range(clients)))
    return ids


def usage():
    actors = [ray.get_actor(coordinator_name(i), namespace=NAMESPACE) for i in range(2)]
    actors.append(ray.get_actor(STREAMER_NAME, namespace=NAMESPACE))
    return [ray.get(actor.stats.remote()) for actor in actors]


def settle(service):
    """Wait until nothing runs and retained logs have expired."""
    time.sleep(RETENTION_WAIT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = usage()
        if all(s.get("running", 0) == 0 and s.get("retained", 0) == 0 for s in stats[:2]) and stats[2]["flows"] == 0:
            return stats
        time.sleep(1)
    raise AssertionError(f"flows or logs were not released: {usage()}")


def test_five_thousand_flows_leave_no_growth(service, backend2):
    ids = asyncio.run(post_flows(service, backend2, 300))  # warm up: imports, pools, caches
    backend2.wait_for_completion(f"ws/{ids[0]}")
    start = settle(service)
    ids = asyncio.run(post_flows(service, backend2, FLOWS))
    for flow_id in ids[:50]:
        backend2.wait_for_completion(f"ws/{flow_id}", timeout=60)
    assert sum(s["completed"] for s in usage()[:2]) >= FLOWS
    end = settle(service)
    for before, after in zip(start, end, strict=True):
        assert after["rss_bytes"] <= before["rss_bytes"] * 1.10, (before, after)
        assert after["open_fds"] <= before["open_fds"] + 5, (before, after)
    assert end[2]["connections"] == 0 and end[2]["events"] == 0
