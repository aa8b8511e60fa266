"""The service beside its peer — one uvicorn process with FastAPI + LangGraph + websockets
(`bench.peer_service`) — with the same client, the same websockets Backend 2 process, the same
box, in one run.

Figures, each for both and as a ratio: `POST /execute` → `flow_started` at Backend 2 (p50 over
200 flows run one at a time), flows/s at 32 clients (a flow counts when its `flow_completed`
arrives), and CPU per flow summed over every server process during that throughput window (ours:
every Ray process — GCS, raylet, proxy, ingress, coordinators, streamer, workers; the peer: its
one process). Flows are start → data_block → end. `RUN_STORE` as the service runs by default
(SQLite); `--store memory` for the in-memory store.

Also, each side's idle CPU (cores busy over `IDLE_SECONDS` with no flow, after the warm-up: Ray's
and Serve's periodic work — controller loop, metrics agent, health checks) and the marginal CPU
per flow: the throughput window's CPU less that idle rate, i.e. what one more flow costs. The idle
part is a fixed cost per node, so its share per flow falls as a node serves more flows.

How the client reaches the service: by default through Serve's Python proxy (the `http_options`
port); `--direct-ingress` straight at the ingress replica's own port (Serve's direct ingress);
`--haproxy` through Serve's HAProxy mode — HAProxy on the `http_options` port (the stable address)
in front of the replicas' own ports, its process counted as the kind `haproxy`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import httpx
import psutil

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
IDLE_SECONDS = 8.0
GOALS = {"cpu_per_flow": 1.5, "flows_per_s": 0.8, "flow_started_p50_plus_ms": 3.0}


async def figures(
    base: str, backend2: Backend2Process, arrivals: Arrivals, cpu: Callable[[], dict[int, float]]
) -> dict[str, float]:
    def body(flow_id: str) -> dict[str, Any]:
        return chain_flow(flow_id, backend2.url(f"ws/{flow_id}"))

    await one_flow_at_a_time(base, arrivals, body, 20)  # warm every path
    idle_cpu0, idle_t0 = cpu(), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle = sum(spent(idle_cpu0, cpu()).values()) / (time.perf_counter() - idle_t0)  # cores busy with no flow
    times = await one_flow_at_a_time(base, arrivals, body, LATENCY_FLOWS)
    started = [(s - t0) * 1000 for t0, s, _ in times]
    cpu0, t0 = cpu(), time.perf_counter()
    rate = await flow_throughput(base, backend2, arrivals, THROUGHPUT_SECONDS)
    flows = rate * (time.perf_counter() - t0)
    cpu_ms = sum(spent(cpu0, cpu()).values()) * 1000 / max(flows, 1)
    total = 20 + LATENCY_FLOWS + flows
    return {
        "flow_started_p50": statistics.median(started),
        "flows_per_s": rate,
        "cpu_per_flow": cpu_ms,
        "idle_cpu": idle,
        "marginal_cpu_per_flow": cpu_ms - idle * 1000 / max(rate, 1e-9),
        "flows_total": total,
    }


def start_peer() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    peer = subprocess.Popen([sys.executable, "-m", "bench.peer_service", str(port)])
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and peer.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return peer, base
        except httpx.HTTPError:
            time.sleep(0.1)
    peer.kill()
    raise RuntimeError("the peer did not start (its error is above)")


def replica_base(timeout: float = 30.0) -> str:
    """The ingress replica's own HTTP port under direct ingress (Serve gives them from 30000 up):
    the one a replica of this run listens on — found among this process's descendants, since
    another Serve on the box may have a replica on 30000 too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process().children(recursive=True):
            try:
                if not " ".join(child.cmdline()).startswith("ray::ServeReplica"):
                    continue
                for conn in child.net_connections("tcp"):
                    if conn.status == psutil.CONN_LISTEN and 30000 <= conn.laddr.port < 31000:
                        return f"http://127.0.0.1:{conn.laddr.port}"
            except psutil.Error:
                continue
        time.sleep(0.2)
    raise RuntimeError("no ingress replica of this run listens on a port from 30000 up")


def haproxy_env(scratch: str) -> dict[str, str]:
    """Serve's HAProxy mode (it implies direct ingress), its fixed ports (stats 8404, metrics 9101,
    the fallback proxy 8500) moved to free ones and its files from /tmp/haproxy-serve to `scratch`,
    so it runs beside any other Serve on the box; a 1 s drain so that shutting down is quick."""
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
        "RAY_SERVE_HAPROXY_STATS_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(_free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": f"{scratch}/haproxy.cfg",
        "RAY_SERVE_HAPROXY_SOCKET_PATH": f"{scratch}/admin.sock",
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": scratch,
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": f"{scratch}/server-state",
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": f"{scratch}/metrics.sock",
    }


def replicas_up(stats_csv: str) -> int:
    """How many Serve replicas HAProxy's stats (`/stats;csv`) show UP (the fallback proxy, a
    backup server, is not one: until a replica is UP, requests go through Serve's Python proxy)."""
    rows = csv.DictReader(io.StringIO(stats_csv.removeprefix("# ")))
    return sum(1 for row in rows if row["svname"].startswith("SERVE_REPLICA") and row["status"] == "UP")


def wait_for_haproxy_route(stats_port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if replicas_up(httpx.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=1).text):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("HAProxy shows no Serve replica UP")


def process_kind(title: str, name: str) -> str:
    """The Ray actor or task class a worker runs (`ray::FlowCoordinator.wait_events` →
    `FlowCoordinator`), else the process name (`raylet`, `gcs_server`, `haproxy`, …)."""
    if title.startswith("ray::"):
        return title.split("ray::", 1)[1].split(".")[0].split(" ")[0]
    return name


def server_processes(outside: set[int]) -> dict[int, tuple[str, float]]:
    """pid → (kind, CPU seconds) of this process's descendants but `outside` (and theirs): every
    process of Ray, and HAProxy's, which Serve starts as a child of its HAProxyManager actor."""
    found: dict[int, tuple[str, float]] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid in outside or child.ppid() in outside:
                continue
            times = child.cpu_times()
            found[child.pid] = (process_kind(" ".join(child.cmdline()), child.name()), times.user + times.system)
        except psutil.Error:
            continue
    return found


def cpu_by_kind(outside: set[int]) -> dict[str, float]:
    """CPU seconds so far per process kind of `server_processes` (summed over its processes)."""
    kinds: dict[str, float] = {}
    for kind, seconds in server_processes(outside).values():
        kinds[kind] = kinds.get(kind, 0.0) + seconds
    return kinds


def spent(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds per process between two samples. Per process, so that one started in between
    counts from zero and one gone in between (an HAProxy replaced by a reload) drops out rather
    than taking back what it had spent before the first sample."""
    return {pid: seconds - before.get(pid, 0.0) for pid, seconds in after.items()}


def cpu_seconds(outside: set[int]) -> dict[int, float]:
    return {pid: seconds for pid, (_, seconds) in server_processes(outside).items()}


def by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    seconds = spent({pid: s for pid, (_, s) in before.items()}, {pid: s for pid, (_, s) in after.items()})
    kinds: dict[str, float] = {}
    for pid, value in seconds.items():
        kinds[after[pid][0]] = kinds.get(after[pid][0], 0.0) + value
    return kinds


def process_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process has spent so far."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def process_cpu(pid: int) -> dict[int, float]:
    return {pid: process_seconds(pid)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "memory"])
    ingress = parser.add_mutually_exclusive_group()
    ingress.add_argument(
        "--direct-ingress",
        action="store_true",
        help="Ray Serve's RAY_SERVE_ENABLE_DIRECT_INGRESS: the client talks to the ingress replica's own port",
    )
    ingress.add_argument(
        "--haproxy",
        action="store_true",
        help="Ray Serve's RAY_SERVE_ENABLE_HA_PROXY: the client talks to HAProxy on the http_options port",
    )
    args = parser.parse_args()
    if args.direct_ingress:
        os.environ.update(
            {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}
        )
    peer, peer_base = start_peer()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-peer-") as data_dir,
            tempfile.TemporaryDirectory(prefix="hap-") as scratch,  # short: unix socket paths go under it
        ):
            os.environ.update({"RUN_STORE": args.store, "DATA_DIR": data_dir})
            if args.haproxy:
                os.environ.update(haproxy_env(scratch))
            with running_service() as (base, backend2, arrivals):
                if args.direct_ingress:
                    base = replica_base()
                if args.haproxy:
                    wait_for_haproxy_route(int(os.environ["RAY_SERVE_HAPROXY_STATS_PORT"]))
                outside = {backend2.pid, peer.pid}
                before = server_processes(outside)
                ours = asyncio.run(figures(base, backend2, arrivals, lambda: cpu_seconds(outside)))
                after = server_processes(outside)
                theirs = asyncio.run(figures(peer_base, backend2, arrivals, lambda: process_cpu(peer.pid)))
    finally:
        peer.kill()
    for name, unit in (
        ("flow_started_p50", "ms"),
        ("flows_per_s", "flows/s"),
        ("cpu_per_flow", "ms"),
        ("marginal_cpu_per_flow", "ms"),
    ):
        print(f"service_{name}: {ours[name]:.2f} {unit}")
        print(f"peer_{name}: {theirs[name]:.2f} {unit}")
        print(f"service_vs_peer_{name}: {ours[name] / theirs[name]:.2f} x")
    print(f"flow_started_p50_service_minus_peer: {ours['flow_started_p50'] - theirs['flow_started_p50']:.2f} ms")
    for who, measured in (("service", ours), ("peer", theirs)):
        print(f"{who}_idle_cpu: {measured['idle_cpu'] * 100:.1f} % of a core")
    flows = ours["flows_total"]
    for kind, seconds in sorted(by_kind(before, after).items(), key=lambda item: -item[1]):
        if seconds * 1000 / flows >= 0.05:  # the whole measurement (latency and throughput rounds)
            print(f"service_cpu_per_flow_{kind}: {seconds * 1000 / flows:.2f} ms")
    haproxies = sorted(pid for pid, (kind, _) in after.items() if kind == "haproxy")
    if args.haproxy:
        replaced = sorted(pid for pid, (kind, _) in before.items() if kind == "haproxy" and pid not in after)
        print(f"(haproxy processes: {haproxies}; replaced during the measurement: {replaced or 'none'})")
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
