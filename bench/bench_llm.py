"""Bedrock token relay through services/bedrock/, against the fake Bedrock in its own process.

- relay latency: the fake stamps each delta with `time.monotonic_ns()` (system-wide clock) just
  before sending its frame; the time until `generate_text` hands it to the callback on the
  event loop is the latency added by HTTP, botocore's event-stream parsing and the
  thread → loop hop. Backend 2's hop (streamer, WebSocket) is measured by the service benchmark.
- concurrency: N streams of 10 deltas × 50 ms (~0.5 s of tokens each) at once, total time vs.
  one stream alone, and the worst stall of the event loop meanwhile (it must stay free for the
  coordinator's other work). Then the same streams split over as many processes as the service
  has coordinators (`--processes`, default 2), as the service runs them.

- CPU per delta: this process's CPU (the reading threads and the loop) per delta handed to the
  callback, `CPU_STREAMS` streams of `CPU_DELTAS` deltas 10 ms apart at once (as a coordinator
  reads them; the fake's CPU is its own process's).

Prints `name: value unit` lines. `python -m bench.bench_llm [--streams 1000] [--cpu-only]`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier

from bench.bench_service import started_pid
from engine.conversation import build_conversation
from engine.llm import ConverseRequest
from services.bedrock import BedrockService
from tests.fakes.bedrock_server import FakeBedrock, TextScript
from tests.fixtures.bedrock import fake_bedrock_settings

# The pipe between this process and the fake's: the parent sends a script to answer with from
# now on, or None to stop; the child answers with the fake's URL once started, then "ok" per script.
type ParentEnd = Connection[TextScript | None, str]
type ChildEnd = Connection[str, TextScript | None]


def _serve(script: TextScript, conn: ChildEnd) -> None:
    server = FakeBedrock().start()
    server.use_script(script)
    conn.send(server.url)
    while (message := conn.recv()) is not None:  # a new script, until the parent says stop
        server.use_script(message)
        conn.send("ok")
    server.stop()


class FakeProcess:
    """The fake Bedrock in a child process, so its threads do not share our GIL."""

    def __init__(self, script: TextScript):
        context = multiprocessing.get_context("spawn")
        self._conn: ParentEnd
        child: ChildEnd
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(script, child), daemon=True)

    def __enter__(self) -> str:
        self._process.start()
        return self._conn.recv()

    @property
    def pid(self) -> int:
        return started_pid(self._process)

    def script(self, script: TextScript) -> None:
        """Replace the script of the next streams."""
        self._conn.send(script)
        self._conn.recv()

    def __exit__(self, *exc: object) -> None:
        self._conn.send(None)
        self._process.join(5)


def _request() -> ConverseRequest:
    system, messages = build_conversation("bench")
    return ConverseRequest(model_id="anthropic.fake-model-v1:0", messages=messages, system=system)


async def relay_latency_ms(url: str, chunks: int) -> list[float]:
    service = BedrockService(fake_bedrock_settings(url))
    samples: list[float] = []

    def on_text(text: str) -> None:
        sent = int(text.split(":", 1)[0])
        samples.append((time.monotonic_ns() - sent) / 1e6)

    try:
        await service.generate_text(_request(), lambda _t: None)  # warm: client + connection
        samples.clear()
        await service.generate_text(_request(), on_text)
    finally:
        service.close()
    assert len(samples) == chunks
    return samples


class LoopWatch:
    """The worst delay of a 10 ms timer on the event loop while the watch runs."""

    def __init__(self, tick: float = 0.01):
        self.tick = tick
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _watch(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.tick)
            self.worst = max(self.worst, time.perf_counter() - t0 - self.tick)


async def concurrent_seconds(url: str, streams: int) -> tuple[float, float, float]:
    """(one stream alone, `streams` at once, worst event-loop stall while they ran) in seconds."""
    service = BedrockService(fake_bedrock_settings(url), max_workers=max(streams, 16))
    try:
        await service.generate_text(_request(), lambda _t: None)
        t0 = time.perf_counter()
        await service.generate_text(_request(), lambda _t: None)
        single = time.perf_counter() - t0
        async with LoopWatch() as watch:
            t0 = time.perf_counter()
            await asyncio.gather(*(service.generate_text(_request(), lambda _t: None) for _ in range(streams)))
            total = time.perf_counter() - t0
        return single, total, watch.worst
    finally:
        service.close()


def _spread_worker(url: str, streams: int, barrier: Barrier, results: Queue[tuple[float, float]]) -> None:
    async def run() -> tuple[float, float]:
        service = BedrockService(fake_bedrock_settings(url), max_workers=max(streams, 16))
        try:
            await service.generate_text(_request(), lambda _t: None)  # warm: client + connection
            await asyncio.to_thread(barrier.wait)
            t0 = time.perf_counter()
            await asyncio.gather(*(service.generate_text(_request(), lambda _t: None) for _ in range(streams)))
            return t0, time.perf_counter()
        finally:
            service.close()

    results.put(asyncio.run(run()))


def spread_seconds(url: str, streams: int, processes: int) -> float:
    """`streams` at once split over `processes` processes, as the service splits flows over its
    coordinators (each with its own Bedrock client): from the common start to the last end."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results: Queue[tuple[float, float]] = context.Queue()  # each worker's (start, end)
    share = [streams // processes + (i < streams % processes) for i in range(processes)]
    workers = [context.Process(target=_spread_worker, args=(url, n, barrier, results)) for n in share]
    for worker in workers:
        worker.start()
    spans = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(10)
    return max(end for _, end in spans) - min(start for start, _ in spans)


CPU_STREAMS, CPU_DELTAS, CPU_DELAY = 10, 300, 0.01


async def cpu_per_delta_us(url: str) -> float:
    """This process's CPU per delta relayed, `CPU_STREAMS` paced streams at once."""
    service = BedrockService(fake_bedrock_settings(url))
    deltas = 0

    def count(_text: str) -> None:
        nonlocal deltas
        deltas += 1

    try:
        await service.generate_text(_request(), count)  # warm: client + connection
        deltas, cpu0 = 0, time.process_time()
        await asyncio.gather(*(service.generate_text(_request(), count) for _ in range(CPU_STREAMS)))
        return (time.process_time() - cpu0) * 1e6 / deltas
    finally:
        service.close()


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2, help="as many as the service's coordinators")
    parser.add_argument("--cpu-only", action="store_true", help="only the CPU per delta")
    args = parser.parse_args()

    with FakeProcess(TextScript(chunks=[f"w{i} " for i in range(CPU_DELTAS)], delay=CPU_DELAY, stamp=True)) as url:
        cpu = await cpu_per_delta_us(url)
    print(f"cpu_per_delta_{CPU_STREAMS}_streams: {cpu:.1f} us")
    if args.cpu_only:
        return

    with FakeProcess(TextScript(chunks=["t"] * args.chunks, delay=0.002, stamp=True)) as url:
        samples = await relay_latency_ms(url, args.chunks)
    print(f"relay_latency_p50: {_percentile(samples, 50):.3f} ms")
    print(f"relay_latency_p99: {_percentile(samples, 99):.3f} ms")

    with FakeProcess(TextScript(chunks=[f"w{i} " for i in range(10)], delay=0.05)) as url:
        single, total, stall = await concurrent_seconds(url, args.streams)
        spread = await asyncio.to_thread(spread_seconds, url, args.streams, args.processes)
    print(f"single_stream: {single:.3f} s")
    print(f"concurrent_{args.streams}_streams: {total:.3f} s")
    print(f"concurrent_vs_single: {total / single:.2f} x")
    print(f"worst_event_loop_stall_during_concurrent: {stall * 1000:.0f} ms")
    print(f"concurrent_{args.streams}_streams_{args.processes}_processes: {spread:.3f} s")
    print(f"concurrent_{args.processes}_processes_vs_single: {spread / single:.2f} x")


if __name__ == "__main__":
    asyncio.run(main())
