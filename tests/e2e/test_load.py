"""Rounds of flows leave no growth: memory and fds of coordinators and streamer stay on a plateau.

A warm-up round brings every actor to its high-water mark (allocator arenas, caches, pools);
then each of several equal rounds is measured after its flows and retained logs are gone. The
test fails when a figure keeps growing from round to round (`tests.growth`), not when it
differs from a cold start. `tests/project/test_growth_detector.py` shows the same limits catch a 1 KB-per-flow
leak.
"""

import asyncio
import time
import uuid

import httpx
import pytest
import ray

from actors.names import NAMESPACE, coordinator_name, streamer_name
from tests.growth import growth_problems, leak_limits

pytestmark = pytest.mark.ray

FLOWS_PER_ROUND = 1500
MEASURED_ROUNDS = 4
ACTORS = ("coordinator 0", "coordinator 1", "streamer 0", "streamer 1")
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
    names = [coordinator_name(0), coordinator_name(1), streamer_name(0), streamer_name(1)]
    return [ray.get(ray.get_actor(name, namespace=NAMESPACE).stats.remote()) for name in names]


def settle(service):
    """Wait until nothing runs and retained logs have expired."""
    time.sleep(RETENTION_WAIT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = usage()
        if all(s.get("running", 0) == 0 and s.get("retained", 0) == 0 for s in stats[:2]) and all(
            s["flows"] == 0 for s in stats[2:]
        ):
            return stats
        time.sleep(1)
    raise AssertionError(f"flows or logs were not released: {usage()}")


def run_round(service, backend2, completed_before: int) -> list[dict]:
    ids = asyncio.run(post_flows(service, backend2, FLOWS_PER_ROUND))
    for flow_id in ids[:50]:
        backend2.wait_for_completion(f"ws/{flow_id}", timeout=60)
    # The first 50 completing says little of the last ones on a loaded box: poll the count.
    target = completed_before + FLOWS_PER_ROUND
    deadline = time.monotonic() + 120
    while (done := sum(s["completed"] for s in usage()[:2])) < target:
        assert time.monotonic() < deadline, f"{target - done} of the round's flows did not complete within 120 s"
        time.sleep(0.5)
    return settle(service)


def test_rounds_of_flows_leave_no_growth(service, backend2):
    completed = sum(s["completed"] for s in usage()[:2])
    run_round(service, backend2, completed)  # warm-up: a full round reaches the high-water mark
    rounds = []
    for _ in range(MEASURED_ROUNDS):
        completed = sum(s["completed"] for s in usage()[:2])
        rounds.append(run_round(service, backend2, completed))
    problems = [
        f"{name}: {problem}"
        for index, name in enumerate(ACTORS)
        for problem in growth_problems([r[index] for r in rounds], leak_limits(FLOWS_PER_ROUND))
    ]
    assert not problems, problems
    end = rounds[-1]
    assert all(streamer["connections"] == 0 and streamer["events"] == 0 for streamer in end[2:])
    for index, name in enumerate(ACTORS):  # shown with -s; the figures docs/BENCHMARKS.md quotes
        print(name, [(r[index]["rss_bytes"] >> 20, r[index]["python_blocks"], r[index]["open_fds"]) for r in rounds])
