"""LLM flows through the whole service: HTTP → Ray Serve → coordinator → Bedrock (the fake, in its
own process) → streamer → a websockets Backend 2 in its own process.

Every delta of the fake carries `time.monotonic_ns()` taken just before its frame is sent;
Backend 2 subtracts it on receipt (CLOCK_MONOTONIC is system-wide), so the relay figure is
fake Bedrock send → Backend 2 receive, every hop included. Each flow is the seed's flow
(start → llm_text → end) streaming 10 deltas 50 ms apart (~0.7 s with the opening and closing
frames).

Figures: relay p50/p99 over 40 flows run one at a time; one flow alone (POST → its
`flow_completed` at Backend 2, median of those 40); `--flows` flows (default 1,000) posted at
once by 64 concurrent clients, from the first POST to the last `flow_completed`, and the ratio;
the CPU per flow of those concurrent flows summed over the service's processes, and beside it
the fakes' (fake Bedrock + Backend 2: the floor of the fakes, not part of the service).
`python -m bench.bench_llm_service [--flows 1000]`.

`--tokens`: the CPU per relayed token instead (see `bench.token_cpu`).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.bench_llm import FakeProcess
from bench.bench_service import Arrivals, Backend2Process, one_flow_at_a_time, pct, running_service
from bench.token_cpu import CpuMeter, measure_tokens
from tests.fakes.bedrock_server import TextScript
from tests.fixtures.bedrock import bedrock_env_at

SEED: dict[str, Any] = json.loads((Path(__file__).resolve().parent.parent / "examples" / "seed_llm.json").read_text())
POSTERS = 64


def seed_flow(backend2: Backend2Process, flow_id: str) -> dict[str, Any]:
    body = copy.deepcopy(SEED)
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    return body


async def one_at_a_time(base: str, backend2: Backend2Process, arrivals: Arrivals, rounds: int) -> list[float]:
    """Seconds from POST to `flow_completed` at Backend 2, one flow at a time."""
    times = await one_flow_at_a_time(base, arrivals, lambda flow_id: seed_flow(backend2, flow_id), rounds)
    return [completed - t0 for t0, _, completed in times]


async def all_at_once(
    base: str, backend2: Backend2Process, arrivals: Arrivals, flows: int, posters: int = POSTERS
) -> float:
    """Seconds from the first POST to the last `flow_completed` of `flows` concurrent flows."""
    ids = [f"llm-{uuid.uuid4().hex[:10]}" for _ in range(flows)]
    queue = list(ids)
    limits = httpx.Limits(max_connections=posters)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def poster() -> None:
            while queue:
                flow_id = queue.pop()
                (await client.post("/execute", json=seed_flow(backend2, flow_id))).raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(poster() for _ in range(posters)))
        ends = await asyncio.gather(*(arrivals.wait("flow_completed", flow_id) for flow_id in ids))
    return max(ends) - t0


async def measure(base: str, backend2: Backend2Process, arrivals: Arrivals, flows: int, meter: CpuMeter) -> None:
    await one_at_a_time(base, backend2, arrivals, 3)  # warm: Bedrock clients, connections
    arrivals.relay_ms.clear()
    single = statistics.median(await one_at_a_time(base, backend2, arrivals, 40))
    relay = list(arrivals.relay_ms)
    print(f"service_relay_latency_p50: {statistics.median(relay):.2f} ms")
    print(f"service_relay_latency_p99: {pct(relay, 99):.2f} ms")
    print(f"service_single_llm_flow: {single:.3f} s")
    before = meter.sample()
    total = await all_at_once(base, backend2, arrivals, flows)
    await asyncio.sleep(1.0)  # the streamer closes the last connections
    spent = meter.sample() - before
    print(f"service_concurrent_{flows}_llm_flows: {total:.3f} s")
    print(f"service_concurrent_vs_single: {total / single:.2f} x")
    print(f"service_cpu_per_llm_flow_concurrent: {spent.service * 1000 / flows:.2f} ms")
    print(f"fakes_cpu_per_llm_flow_concurrent: {spent.fakes * 1000 / flows:.2f} ms")
    for kind, seconds in spent.kinds():
        owner = "fakes" if kind in spent.by_fake else "service"
        print(f"{owner}_cpu_per_llm_flow_{kind}: {seconds * 1000 / flows:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--tokens", action="store_true", help="CPU per relayed llm_chunk (bench.token_cpu)")
    parser.add_argument("--token-flows", type=int, default=20, help="--tokens: concurrent flows per round")
    parser.add_argument("--deltas", type=int, default=200, help="--tokens: deltas per flow in the long rounds")
    parser.add_argument("--delay", type=float, default=0.01, help="--tokens: seconds between deltas")
    parser.add_argument("--rounds", type=int, default=2, help="--tokens: pairs of long and short rounds")
    args = parser.parse_args()
    fake = FakeProcess(TextScript(chunks=[f"w{i} " for i in range(10)], delay=0.05, stamp=True))
    with fake as url:
        env = bedrock_env_at(url) | {"AWS_EC2_METADATA_DISABLED": "true"}
        with running_service(env) as (base, backend2, arrivals):
            meter = CpuMeter(fakes={"fake_bedrock": fake.pid, "backend2": backend2.pid})
            if args.tokens:
                asyncio.run(measure_tokens(base, backend2, arrivals, meter, fake, args))
            else:
                asyncio.run(measure(base, backend2, arrivals, args.flows, meter))


if __name__ == "__main__":
    main()
