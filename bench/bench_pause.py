"""Pauses and re-runs through the whole service (Ray + Serve, SQLite run store, a websockets
Backend 2 in its own process), in one run:

- memory per paused flow: `PAUSED` flows (start → wait_for_input → end) posted by 32 clients,
  each counted once its `flow_paused` reached Backend 2; then, once the streamer has closed
  their connections, the coordinators' and the streamer's resident memory and Python blocks
  against the same figures before (both after a warm-up of the same flows, resumed):
  `paused_rss_delta_…` and `paused_bytes_per_flow_…`.
- resume latency: `RESUMES` of those flows one at a time, `POST /flows/{id}/resume` →
  `flow_resumed` at Backend 2 (the resumed run's first event) and → `flow_completed`.
- re-run: a 10-element chain (start, 8 `data_block`s, end) run in full, then re-run from its
  last element (9 results cached), `RERUNS` each, one at a time: POST → `flow_completed` at
  Backend 2, p50, and the ratio.
Loopback only; ~4 min on a 2-core box with the defaults. `python -m bench.bench_pause [PAUSED]`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx

from bench.bench_service import CLIENTS, Arrivals, Backend2Process, chain_flow, pct, running_service
from tests.engine_doubles import flow

PAUSED = 10_000
RESUMES = 100
RERUNS = 30
CHAIN = 8


def _waiting(flow_id: str, url: str) -> dict[str, Any]:
    elements = {"s": {"type": "start"}, "w": {"type": "wait_for_input", "prompt": "ok {x}?"}, "e": {"type": "end"}}
    return flow(elements, [("s", "w"), ("w", "e")], inputs={"x": 1}, flow_id=flow_id) | {"backend2_ws_url": url}


def usage() -> dict[str, dict[str, Any]]:
    """Each coordinator's and streamer's `stats()`, by label."""
    import ray

    from actors.names import NAMESPACE, coordinator_name, streamer_name

    names = {f"coordinator {i}": coordinator_name(i) for i in range(2)} | {
        f"streamer {i}": streamer_name(i) for i in range(2)
    }
    return {label: ray.get(ray.get_actor(name, namespace=NAMESPACE).stats.remote()) for label, name in names.items()}


async def pause_many(base: str, backend2: Backend2Process, arrivals: Arrivals, n: int) -> list[str]:
    ids = [f"p-{uuid.uuid4().hex[:10]}" for _ in range(n)]
    queue = iter(ids)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=CLIENTS)) as client:

        async def worker() -> None:
            for flow_id in queue:
                (
                    await client.post("/execute", json=_waiting(flow_id, backend2.url(f"ws/{flow_id}")))
                ).raise_for_status()
                await arrivals.wait("flow_paused", flow_id)

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return ids


async def resume_each(base: str, arrivals: Arrivals, ids: list[str]) -> tuple[list[float], list[float]]:
    to_resumed, to_completed = [], []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for flow_id in ids:
            t0 = time.perf_counter()
            answer = await client.post(f"/flows/{flow_id}/resume", json={"element_id": "w", "inputs": {"ok": True}})
            answer.raise_for_status()
            to_resumed.append((await arrivals.wait("flow_resumed", flow_id) - t0) * 1000)
            to_completed.append((await arrivals.wait("flow_completed", flow_id) - t0) * 1000)
    return to_resumed, to_completed


async def settle_connections(timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(stats.get("connections", 0) == 0 for label, stats in usage().items() if label.startswith("streamer")):
            return
        await asyncio.sleep(1)


async def rerun_times(base: str, backend2: Backend2Process, arrivals: Arrivals) -> tuple[list[float], list[float]]:
    full, rerun = [], []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(RERUNS):
            flow_id = f"c-{uuid.uuid4().hex[:10]}"
            t0 = time.perf_counter()
            (
                await client.post("/execute", json=chain_flow(flow_id, backend2.url(f"ws/{flow_id}"), chain=CHAIN))
            ).raise_for_status()
            full.append((await arrivals.wait("flow_completed", flow_id) - t0) * 1000)
            new_id = f"r-{uuid.uuid4().hex[:10]}"
            body = {"flow_id": new_id, "backend2_ws_url": backend2.url(f"ws/{new_id}"), "from_element": "e"}
            t0 = time.perf_counter()
            (await client.post(f"/flows/{flow_id}/rerun", json=body)).raise_for_status()
            rerun.append((await arrivals.wait("flow_completed", new_id) - t0) * 1000)
    return full, rerun


async def measure(base: str, backend2: Backend2Process, arrivals: Arrivals, paused: int) -> None:
    warm = await pause_many(base, backend2, arrivals, 200)
    await resume_each(base, arrivals, warm)
    await settle_connections()
    before = usage()
    t0 = time.perf_counter()
    ids = await pause_many(base, backend2, arrivals, paused)
    print(f"paused_flows: {paused} in {time.perf_counter() - t0:.0f} s")
    await settle_connections()
    after = usage()
    for label in before:
        rss = after[label]["rss_bytes"] - before[label]["rss_bytes"]
        blocks = after[label]["python_blocks"] - before[label]["python_blocks"]
        print(f"paused_rss_delta_{label.replace(' ', '_')}: {rss / 2**20:+.1f} MB ({rss / paused:+.0f} bytes per flow)")
        print(f"paused_python_blocks_delta_{label.replace(' ', '_')}: {blocks:+d} ({blocks / paused:+.2f} per flow)")
    print(f"running_after_pause: {sum(after[f'coordinator {i}']['running'] for i in range(2))}")
    to_resumed, to_completed = await resume_each(base, arrivals, ids[:RESUMES])
    print(f"resume_to_flow_resumed_p50: {statistics.median(to_resumed):.1f} ms (p95 {pct(to_resumed, 95):.1f})")
    print(f"resume_to_flow_completed_p50: {statistics.median(to_completed):.1f} ms (p95 {pct(to_completed, 95):.1f})")
    full, rerun = await rerun_times(base, backend2, arrivals)
    print(f"full_run_10_elements_p50: {statistics.median(full):.1f} ms")
    print(f"rerun_from_last_element_p50: {statistics.median(rerun):.1f} ms")
    print(f"rerun_vs_full: {statistics.median(rerun) / statistics.median(full):.2f} ×")


def main() -> None:
    paused = int(sys.argv[1]) if len(sys.argv) > 1 else PAUSED
    env = {"RUN_STORE": "sqlite", "DATA_DIR": tempfile.mkdtemp(prefix="bench-pause-")}
    with running_service(env) as (base, backend2, arrivals):
        asyncio.run(measure(base, backend2, arrivals, paused))


if __name__ == "__main__":
    main()
