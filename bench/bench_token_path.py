"""The per-token path without Ray or Bedrock, in one process: `EventEmitter` → `EventOutbox`
(SQLite run store) → `StreamerCore` → a websockets Backend 2 in its own process.

The outbox's streamer handle pickles each `publish_many` call's arguments and unpickles them
before calling the core (what crossing Ray costs in serialisation, not the RPC itself). Flows
emit as the llm element does: `flow_started`, `element_started`, `--deltas` `llm_chunk`s
`--delay` seconds apart, `element_completed` (the full text), `flow_completed`; `--flows` at
once, each with its run created in the store first.

Figures: this process's CPU per token (user + system: the loop, aiosqlite's thread), Backend 2's
beside it, tokens received; `--profile` prints cProfile's top functions by own time.
`python -m bench.bench_token_path [--flows 20] [--deltas 300] [--delay 0.005] [--profile]`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pickle
import pstats
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from actors.event_forwarder import EventOutbox
from actors.streamer import StreamerCore
from bench.bench_peer import process_seconds
from bench.bench_service import Arrivals, Backend2Process
from engine.events import EventEmitter
from engine.run_store import NewRun, RunStore
from engine.settings import Settings
from services.run_store import open_run_store


def _harness_threads() -> list[int]:
    """The native ids of the threads that read Backend 2's arrival reports (not the path's work)."""
    return [t.native_id for t in threading.enumerate() if t.native_id is not None and "_drain" in t.name]


def _threads_cpu(native_ids: list[int]) -> float:
    ticks = 0
    for native_id in native_ids:
        fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class PickledHandle:
    """Stands for the streamer's Ray handle: `publish_many.remote(entries)` pickles its argument."""

    def __init__(self, core: StreamerCore):
        self.core = core
        self.publish_many = self

    def remote(self, entries: Any) -> Any:
        return self.core.publish_many(pickle.loads(pickle.dumps(entries, protocol=5)))


async def one_flow(outbox: EventOutbox, store: RunStore, flow_id: str, url: str, deltas: int, delay: float) -> None:
    await store.create_run(NewRun(flow_id, "", b"{}", url, 0, time.time()))
    forwarder = outbox.forwarder(flow_id, url)
    emitter = EventEmitter(flow_id, forwarder)
    emitter.emit("flow_started", {"start_element_id": "start-1", "elements": 3})
    emitter.emit("element_started", {"type": "llm_text", "name": "LLM", "inputs": {"prompt": "hi"}}, "llm-1")
    text = []
    for index in range(deltas):
        await asyncio.sleep(delay)
        chunk = f"{time.monotonic_ns()}:w{index} "
        text.append(chunk)
        emitter.emit("llm_chunk", {"chunk": chunk, "index": index}, "llm-1")
    emitter.emit("element_completed", {"outputs": {"llm_output": "".join(text)}, "duration_ms": 1.0}, "llm-1")
    emitter.emit("flow_completed", {"status": "completed", "outputs": {}, "error": None, "duration_ms": 1.0})
    await forwarder.close()


async def measure(args: argparse.Namespace, backend2: Backend2Process, arrivals: Arrivals, data_dir: str) -> None:
    settings = Settings(data_dir=data_dir, run_store="sqlite")
    coordinator_store, streamer_store = open_run_store(settings), open_run_store(settings)
    await coordinator_store.open()
    core = StreamerCore(settings, store=streamer_store)
    outbox = EventOutbox(
        PickledHandle(core),
        coordinator_store,
        max_event_bytes=settings.max_event_bytes,
        value_max_bytes=settings.event_value_max_bytes,
    )

    async def round_(deltas: int) -> None:
        ids = [f"tok-{os.urandom(5).hex()}" for _ in range(args.flows)]
        await asyncio.gather(
            *(one_flow(outbox, coordinator_store, f, backend2.url(f"ws/{f}"), deltas, args.delay) for f in ids)
        )
        await asyncio.gather(*(arrivals.wait("flow_completed", f) for f in ids))

    await round_(5)  # warm
    profiler = cProfile.Profile() if args.profile else None  # wall time: epoll's `poll` is the idle loop
    harness = _harness_threads()
    tokens0, fake0 = len(arrivals.relay_ms), process_seconds(backend2.pid)
    cpu0 = time.process_time() - _threads_cpu(harness)
    if profiler is not None:
        profiler.enable()
    t0 = time.perf_counter()
    await round_(args.deltas)
    await asyncio.sleep(0.5)  # last confirmations
    if profiler is not None:
        profiler.disable()
    tokens = len(arrivals.relay_ms) - tokens0
    cpu = time.process_time() - _threads_cpu(harness) - cpu0
    fake = process_seconds(backend2.pid) - fake0
    print(f"path_tokens: {tokens} in {time.perf_counter() - t0:.2f} s")
    print(f"path_cpu_per_token: {cpu * 1000 / tokens:.4f} ms")
    print(f"path_backend2_cpu_per_token: {fake * 1000 / tokens:.4f} ms")
    await core.close()
    await streamer_store.close()
    await coordinator_store.close()
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(40)
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=20)
    parser.add_argument("--deltas", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.005)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    backend2 = Backend2Process()
    arrivals = Arrivals(backend2.queue)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-token-path-") as data_dir:
            asyncio.run(measure(args, backend2, arrivals, data_dir))
    finally:
        backend2.shutdown()


if __name__ == "__main__":
    main()
