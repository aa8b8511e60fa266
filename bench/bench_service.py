"""The whole service (Ray Serve + coordinators + streamer + a websockets Backend 2), beside a
no-op request through the same Serve ingress measured in the same run.

Figures: no-op requests — `GET /health`, and `POST /validate` with a flow body of the same
size (Serve makes the replica fetch a request body from its proxy with an extra actor call, a
cost every POST pays) — latency and req/s at 32 clients; `POST /execute` → `flow_started`
received by Backend 2 (p50/p95 over 200 flows of 3 elements); flows/s at 32 clients (a flow
counts when its `flow_completed` arrives); per-element time through the service on a
50-element chain. Loopback only; bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from typing import Any

import httpx

ELEMENTS_PER_FLOW = 3
CLIENTS = 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def started_pid(process: BaseProcess) -> int:
    """The pid of a process that was started (multiprocessing has none before `start`)."""
    if process.pid is None:
        raise RuntimeError(f"{process.name} is not started")
    return process.pid


def chain_flow(flow_id: str, url: str, chain: int = 1) -> dict[str, Any]:
    middle = [f"d{i}" for i in range(chain)]
    ids = ["s", *middle, "e"]
    elements: dict[str, dict[str, Any]] = {
        "s": {"type": "start", "element_id": "s"},
        "e": {"type": "end", "element_id": "e"},
    }
    elements |= {m: {"type": "data_block", "element_id": m, "data": {"v": 1}} for m in middle}
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": elements,
            "connections": [{"from_id": a, "to_id": b} for a, b in itertools.pairwise(ids)],
            "start_element_id": "s",
        },
        "initial_inputs": {"x": 1},
        "backend2_ws_url": url,
    }


REPORTED = ("flow_started", "flow_paused", "flow_resumed", "flow_completed")  # event types Arrivals records
# What the Backend 2 process reports: (a `REPORTED` type, flow id, `time.perf_counter()` at arrival),
# or ("llm_chunk", flow id, ms from the fake Bedrock's send to Backend 2's receipt).
type Report = tuple[str, str, float]


class Arrivals:
    """Arrival times reported by the Backend 2 process (CLOCK_MONOTONIC is system-wide).

    Waiting for an arrival is event-driven (no polling), so the harness itself stays cheap
    next to the service it measures.
    """

    def __init__(self, queue: Queue[Report]) -> None:
        self.arrived: dict[str, dict[str, float]] = {kind: {} for kind in REPORTED}  # kind → flow id → time
        self.relay_ms: list[float] = []  # stamped LLM deltas: fake Bedrock send → Backend 2 receive
        self._waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._drain, args=(queue,), daemon=True).start()

    def _drain(self, queue: Queue[Report]) -> None:
        while True:
            kind, flow_id, at = queue.get()
            if kind == "llm_chunk":
                self.relay_ms.append(at)
                continue
            with self._lock:
                self.arrived[kind].setdefault(flow_id, at)
                waiter = self._waiters.pop((kind, flow_id), None)
            if waiter is not None:
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter, at)

    async def wait(self, kind: str, flow_id: str) -> float:
        """When the flow's first event of `kind` (one of `REPORTED`) reached Backend 2."""
        arrived = self.arrived[kind]
        with self._lock:
            if flow_id in arrived:
                return arrived[flow_id]
            waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
            self._waiters[(kind, flow_id)] = waiter
        return await waiter


def _resolve(waiter: asyncio.Future[float], at: float) -> None:
    if not waiter.done():
        waiter.set_result(at)


class Backend2Process:
    """A websockets Backend 2 in a process of its own, as a real Backend 2 would be."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.queue: Queue[Report] = context.Queue()
        self.port = _free_port()
        self.process = context.Process(target=_serve_backend2, args=(self.port, self.queue), daemon=True)
        self.process.start()
        self.pid = started_pid(self.process)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("Backend 2 did not start")

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{path}"

    def shutdown(self) -> None:
        self.process.kill()


def _serve_backend2(port: int, queue: Queue[Report]) -> None:
    from tests.fakes.backend2 import FakeBackend2, Message

    def report(message: Message) -> None:
        if message["type"] in REPORTED:
            queue.put((message["type"], message["flow_id"], time.perf_counter()))
        elif message["type"] == "llm_chunk":  # a fake Bedrock stamps `<monotonic_ns>:` on each delta
            stamp = message["data"]["chunk"].split(":", 1)[0]
            if stamp.isdigit():
                queue.put(("llm_chunk", message["flow_id"], (time.monotonic_ns() - int(stamp)) / 1e6))

    FakeBackend2(port=port, on_message=report).start()
    threading.Event().wait()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else max(values)


async def _noop_call(client: httpx.AsyncClient, kind: str) -> None:
    """`get`: `GET /health`; `post`: `POST /validate` with a flow body like the measured ones."""
    if kind == "get":
        response = await client.get("/health")
    else:
        flow_id = f"v-{uuid.uuid4().hex[:10]}"
        response = await client.post("/validate", json=chain_flow(flow_id, f"ws://127.0.0.1:9/ws/{flow_id}"))
    response.raise_for_status()


async def noop_latency(base: str, n: int, kind: str = "get") -> list[float]:
    samples = []
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            await _noop_call(client, kind)
            samples.append((time.perf_counter() - t0) * 1000)
    return samples


async def noop_throughput(base: str, seconds: float, kind: str = "get") -> float:
    done = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CLIENTS)

    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await _noop_call(client, kind)
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return done / (time.perf_counter() - t0)


async def one_flow_at_a_time(
    base: str, arrivals: Arrivals, body_for: Callable[[str], dict[str, Any]], n: int
) -> list[tuple[float, float, float]]:
    """Per flow, run one at a time: (POST sent, flow_started arrived, flow_completed arrived)."""
    times = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for _ in range(n):
            flow_id = f"seq-{uuid.uuid4().hex[:10]}"
            t0 = time.perf_counter()
            (await client.post("/execute", json=body_for(flow_id))).raise_for_status()
            started = await arrivals.wait("flow_started", flow_id)
            times.append((t0, started, await arrivals.wait("flow_completed", flow_id)))
    return times


async def flow_started_latency(base: str, backend2: Backend2Process, arrivals: Arrivals, n: int) -> list[float]:
    times = await one_flow_at_a_time(base, arrivals, lambda f: chain_flow(f, backend2.url(f"ws/{f}")), n)
    return [(started - t0) * 1000 for t0, started, _ in times]


async def flow_throughput(base: str, backend2: Backend2Process, arrivals: Arrivals, seconds: float) -> float:
    posted: list[str] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                flow_id = f"tp-{uuid.uuid4().hex[:10]}"
                (
                    await client.post("/execute", json=chain_flow(flow_id, backend2.url(f"ws/{flow_id}")))
                ).raise_for_status()
                posted.append(flow_id)
                await arrivals.wait("flow_completed", flow_id)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
    return len(posted) / (time.perf_counter() - t0)


async def chain_per_element_ms(
    base: str, backend2: Backend2Process, arrivals: Arrivals, length: int, rounds: int
) -> float:
    samples = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for _ in range(rounds):
            flow_id = f"chain-{uuid.uuid4().hex[:10]}"
            body = chain_flow(flow_id, backend2.url(f"ws/{flow_id}"), chain=length - 2)
            t0 = time.perf_counter()
            (await client.post("/execute", json=body)).raise_for_status()
            samples.append((await arrivals.wait("flow_completed", flow_id) - t0) * 1000 / length)
    return statistics.median(samples)


async def measure(base: str, backend2: Backend2Process, arrivals: Arrivals) -> None:
    await noop_latency(base, 50)  # warm up every path
    await noop_latency(base, 50, "post")
    await flow_started_latency(base, backend2, arrivals, 20)
    noop = await noop_latency(base, 200)
    post = await noop_latency(base, 200, "post")
    started = await flow_started_latency(base, backend2, arrivals, 200)
    for name, samples in (("noop_request", noop), ("noop_post", post), ("execute_to_flow_started", started)):
        print(f"{name}_p50: {statistics.median(samples):.2f} ms")
        print(f"{name}_p95: {pct(samples, 95):.2f} ms")
    print(f"flow_started_p50_minus_noop_p50: {statistics.median(started) - statistics.median(noop):.2f} ms")
    print(f"flow_started_p50_minus_noop_post_p50: {statistics.median(started) - statistics.median(post):.2f} ms")
    noop_rps = await noop_throughput(base, 8)
    post_rps = await noop_throughput(base, 8, "post")
    flows = await flow_throughput(base, backend2, arrivals, 8)
    print(f"noop_requests_per_s_32_clients: {noop_rps:.1f} req/s")
    print(f"noop_posts_per_s_32_clients: {post_rps:.1f} req/s")
    print(f"flows_per_s_32_clients_3_elements: {flows:.1f} flows/s")
    for name, rate in (("noop", noop_rps), ("noop_post", post_rps)):
        print(f"flows_per_s_vs_{name}: {flows / rate:.2f} x")
    print(f"service_per_element_50_chain: {await chain_per_element_ms(base, backend2, arrivals, 50, 20):.3f} ms")


@contextlib.contextmanager
def running_service(env: dict[str, str] | None = None) -> Iterator[tuple[str, Backend2Process, Arrivals]]:
    """Backend 2 in its own process, then Ray + Serve with the app; yields (base URL, Backend 2,
    arrivals). `env` reaches every Ray process (workers inherit the driver's environment)."""
    import ray
    from ray import serve

    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.update(env or {})
    backend2 = Backend2Process()
    arrivals = Arrivals(backend2.queue)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        import serve_app

        port = _free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(serve_app.app, name="flow-executor", route_prefix="/")
        yield f"http://127.0.0.1:{port}", backend2, arrivals
    finally:
        serve.shutdown()
        ray.shutdown()
        backend2.shutdown()


def main() -> None:
    with running_service() as (base, backend2, arrivals):
        asyncio.run(measure(base, backend2, arrivals))


if __name__ == "__main__":
    main()
