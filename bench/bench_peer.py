"""The service beside its peer — one uvicorn process with FastAPI + LangGraph + websockets
(`bench.peer_service`) — with the same client, the same websockets Backend 2 process, the same
box, in one run.

Figures, each for both and as a ratio: `POST /execute` → `flow_started` at Backend 2 (p50 over
200 flows run one at a time), flows/s at 32 clients (a flow counts when its `flow_completed`
arrives), and CPU per flow summed over every server process during that throughput window (ours:
every Ray process — GCS, raylet, proxy, ingress, coordinators, streamer, workers; the peer: its
one process). Flows are start → data_block → end. `RUN_STORE` as the service runs by default
(SQLite); `--store memory` for the in-memory store.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import httpx
import psutil

from bench.bench_run_store import server_cpu_seconds
from bench.bench_service import (
    Arrivals,
    Backend2Process,
    _free_port,
    chain_flow,
    flow_throughput,
    one_flow_at_a_time,
    running_service,
)

LATENCY_FLOWS = 200
THROUGHPUT_SECONDS = 8.0
GOALS = {"cpu_per_flow": 1.5, "flows_per_s": 0.8, "flow_started_p50_plus_ms": 3.0}


async def figures(
    base: str, backend2: Backend2Process, arrivals: Arrivals, cpu: Callable[[], float]
) -> dict[str, float]:
    def body(flow_id: str) -> dict:
        return chain_flow(flow_id, backend2.url(f"ws/{flow_id}"))

    await one_flow_at_a_time(base, arrivals, body, 20)  # warm every path
    times = await one_flow_at_a_time(base, arrivals, body, LATENCY_FLOWS)
    started = [(s - t0) * 1000 for t0, s, _ in times]
    cpu0, t0 = cpu(), time.perf_counter()
    rate = await flow_throughput(base, backend2, arrivals, THROUGHPUT_SECONDS)
    flows = rate * (time.perf_counter() - t0)
    cpu_ms = (cpu() - cpu0) * 1000 / max(flows, 1)
    total = 20 + LATENCY_FLOWS + flows
    return {
        "flow_started_p50": statistics.median(started),
        "flows_per_s": rate,
        "cpu_per_flow": cpu_ms,
        "flows_total": total,
    }


def start_peer() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    peer = subprocess.Popen([sys.executable, "-m", "bench.peer_service", str(port)])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return peer, base
        except httpx.HTTPError:
            time.sleep(0.1)
    peer.kill()
    raise RuntimeError("the peer did not start")


def replica_base() -> str:
    """The ingress replica's own HTTP port under direct ingress (Serve gives them from 30000 up)."""
    for port in range(30000, 30050):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            continue
    raise RuntimeError("no ingress replica answers on ports 30000-30049")


def cpu_by_kind(outside: set[int]) -> dict[str, float]:
    """CPU seconds of this process's descendants but `outside`, by kind: the Ray actor or task
    class a worker runs (`ray::FlowCoordinator.…` → `FlowCoordinator`), else the process name."""
    kinds: dict[str, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in outside or child.ppid() in outside:
                continue
            title = " ".join(child.cmdline()) or child.name()
            kind = title.split("ray::", 1)[1].split(".")[0].split(" ")[0] if title.startswith("ray::") else child.name()
            times = child.cpu_times()
            kinds[kind] = kinds.get(kind, 0.0) + times.user + times.system
        except psutil.Error:
            continue
    return kinds


def process_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "memory"])
    parser.add_argument(
        "--direct-ingress",
        action="store_true",
        help="Ray Serve's RAY_SERVE_ENABLE_DIRECT_INGRESS: the client talks to the ingress replica's own port",
    )
    args = parser.parse_args()
    if args.direct_ingress:
        os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1"
    peer, peer_base = start_peer()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peer-") as data_dir:
            os.environ.update({"RUN_STORE": args.store, "DATA_DIR": data_dir})
            with running_service() as (base, backend2, arrivals):
                if args.direct_ingress:
                    base = replica_base()
                outside = {backend2.process.pid, peer.pid}
                kinds0 = cpu_by_kind(outside)
                ours = asyncio.run(figures(base, backend2, arrivals, lambda: server_cpu_seconds(outside)))
                kinds1 = cpu_by_kind(outside)
                theirs = asyncio.run(figures(peer_base, backend2, arrivals, lambda: process_cpu(peer.pid)))
    finally:
        peer.kill()
    for name, unit in (("flow_started_p50", "ms"), ("flows_per_s", "flows/s"), ("cpu_per_flow", "ms")):
        print(f"service_{name}: {ours[name]:.2f} {unit}")
        print(f"peer_{name}: {theirs[name]:.2f} {unit}")
        print(f"service_vs_peer_{name}: {ours[name] / theirs[name]:.2f} x")
    print(f"flow_started_p50_service_minus_peer: {ours['flow_started_p50'] - theirs['flow_started_p50']:.2f} ms")
    flows = ours["flows_total"]
    spent = {kind: kinds1[kind] - kinds0.get(kind, 0.0) for kind in kinds1}
    for kind, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        if seconds * 1000 / flows >= 0.05:  # the whole measurement (latency and throughput rounds)
            print(f"service_cpu_per_flow_{kind}: {seconds * 1000 / flows:.2f} ms")
    cpu_ok = ours["cpu_per_flow"] <= GOALS["cpu_per_flow"] * theirs["cpu_per_flow"]
    rate_ok = ours["flows_per_s"] >= GOALS["flows_per_s"] * theirs["flows_per_s"]
    latency_ok = ours["flow_started_p50"] <= theirs["flow_started_p50"] + GOALS["flow_started_p50_plus_ms"]
    for goal, ok in (
        ("cpu_per_flow_le_1.5x", cpu_ok),
        ("flows_per_s_ge_0.8x", rate_ok),
        ("p50_le_peer_plus_3ms", latency_ok),
    ):
        print(f"goal_{goal}: {'met' if ok else 'not met'}")


if __name__ == "__main__":
    main()
