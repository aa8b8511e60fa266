"""The cost of persistence: the whole service on each run store, one after the other, in one run.

For each store — `memory` (nothing durable: the baseline), `sqlite` (a fresh temp `DATA_DIR`),
`postgres` (a fresh embedded PostgreSQL 18 server on loopback, `tests.fixtures.postgres`, with
that fixture's settings: fsync off) — the service is started with `RUN_STORE=<store>`
(`bench_service.running_service`: Ray + Serve, a websockets Backend 2 in its own process), then
measured, then fully stopped (Serve and Ray shut down) before the next store starts:

- relay: the seed's LLM flow (start → llm_text → end) streaming `CHUNKS` deltas `DELAY` s apart
  from the fake Bedrock (its own process, shared by the three runs), `RELAY_FLOWS` flows one at
  a time. Each delta carries `time.monotonic_ns()` taken by the fake Bedrock as it builds the
  delta's frame; Backend 2 subtracts it when it receives the `llm_chunk` event (what
  `bench_llm_service` measures): `relay_send_to_backend2_p50/p95/p99_<store>`.
- flows/s at 32 clients for the plain 3-element flow (start → data_block → end), counted at its
  `flow_completed` at Backend 2 (`bench_service.flow_throughput`), `FLOW_SECONDS` each; and the
  server's CPU per flow in that window: user + system time of every process the service runs
  (Ray's daemons, actors and replicas, and the PostgreSQL server; not Backend 2, the fake Bedrock
  or this client).
- store_commit_1_event_p50/p99: one store's `commit` of a single event (what a lone token
  costs the coordinator's flush), timed in this process against the same store after its
  service stopped: an idle box, the cost of the store and its driver alone.
- postgres only: write transactions (xids the server assigned) per relayed token and per flow
  of the throughput window, and write transactions per second during that window.

The three stores are measured `ROUNDS` times, interleaved (memory, sqlite, postgres, memory, …),
so that a slow minute of a shared box does not land on one store only; each figure is the median
over the rounds. Then the ratios against memory, and the issue's goal — persistence costs ≤ 15 % of flows/s and
≤ 1 ms of relay p99 — as `goal_…: met|not met` (the benchmark never fails on it).
Loopback only; bounded in time (~4–5 min on a 2-core box).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import psutil

from bench.bench_llm import FakeProcess
from bench.bench_llm_service import one_at_a_time
from bench.bench_service import (
    Arrivals,
    Backend2Process,
    flow_started_latency,
    flow_throughput,
    pct,
    running_service,
)
from tests.fakes.bedrock_server import TextScript

STORES = ("memory", "sqlite", "postgres")
CHUNKS = 20
DELAY = 0.02  # seconds between deltas: each token goes through an idle coordinator on its own
RELAY_FLOWS = 20
FLOW_SECONDS = 6.0
ROUNDS = 2
COMMITS = 300
GOAL_FLOWS_RATIO = 0.85
GOAL_RELAY_P99_MS = 1.0


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` set in os.environ for the block (Ray workers inherit it), the old one restored."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _write_xids(url: str | None) -> int | None:
    """PostgreSQL's next transaction id: it advances once per writing transaction (reading it
    does not); None without a server."""
    if url is None:
        return None
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"))
    finally:
        await conn.close()


def server_cpu_seconds(outside: set[int]) -> float:
    """User + system CPU seconds of this process's descendants but those in `outside` (and theirs),
    plus the PostgreSQL server's processes (pg_ctl detaches them): the store's server is part of
    what persistence costs."""
    total = 0.0
    postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    for child in psutil.Process().children(recursive=True) + postgres:
        try:
            if child.pid in outside or child.ppid() in outside:
                continue
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def measure(
    base: str, backend2: Backend2Process, arrivals: Arrivals, pg_url: str | None, outside: set[int]
) -> dict[str, float]:
    await flow_started_latency(base, backend2, arrivals, 10)  # warm every path
    await one_at_a_time(base, backend2, arrivals, 2)
    figures: dict[str, float] = {}

    arrivals.relay_ms.clear()
    xid0 = await _write_xids(pg_url)
    await one_at_a_time(base, backend2, arrivals, RELAY_FLOWS)
    xid1 = await _write_xids(pg_url)
    relay = list(arrivals.relay_ms)
    figures["relay_p50"] = statistics.median(relay)
    figures["relay_p95"] = pct(relay, 95)
    figures["relay_p99"] = pct(relay, 99)
    figures["relay_samples"] = len(relay)

    cpu0, t0 = server_cpu_seconds(outside), time.perf_counter()
    flows = await flow_throughput(base, backend2, arrivals, FLOW_SECONDS)
    seconds = time.perf_counter() - t0
    figures["server_cpu_ms_per_flow"] = (server_cpu_seconds(outside) - cpu0) * 1000 / max(flows * seconds, 1)
    xid2 = await _write_xids(pg_url)
    figures["flows_per_s"] = flows
    if xid0 is not None and xid1 is not None and xid2 is not None:
        figures["write_transactions_per_token"] = (xid1 - xid0) / max(len(relay), 1)
        figures["write_transactions_per_flow"] = (xid2 - xid1) / max(flows * seconds, 1)
        figures["write_transactions_per_s"] = (xid2 - xid1) / seconds
    return figures


async def commit_cost_ms(env: dict[str, str]) -> list[float]:
    """Milliseconds of `commit` of one event, `COMMITS` times, on the store `env` configures."""
    from engine.run_store import Commit, NewRun
    from engine.settings import Settings
    from services.run_store import open_run_store

    with _environment(env):
        store = open_run_store(Settings(_env_file=None))
    await store.open()
    try:
        flow_id = f"commit-{uuid.uuid4().hex[:10]}"
        await store.create_run(NewRun(flow_id, "bench", b"{}", "ws://127.0.0.1:9/ws", 0, time.time()))
        text = '{"type":"llm_chunk","flow_id":"%s","seq":%d,"data":{"chunk":"w1 "}}'
        samples = []
        for seq in range(1, COMMITS + 1):
            batch = Commit(events=[(flow_id, seq, text % (flow_id, seq))])
            t0 = time.perf_counter()
            await store.commit(batch)
            samples.append((time.perf_counter() - t0) * 1000)
        return samples
    finally:
        await store.close()


def run_store(env: dict[str, str], pg_url: str | None, outside: set[int]) -> dict[str, float]:
    import ray

    with _environment(env), running_service() as (base, backend2, arrivals):
        figures = asyncio.run(measure(base, backend2, arrivals, pg_url, outside | {backend2.pid}))
    assert not ray.is_initialized(), "Ray still running after the service stopped"
    commits = asyncio.run(commit_cost_ms(env))
    figures["commit_p50"] = statistics.median(commits)
    figures["commit_p99"] = pct(commits, 99)
    return figures


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    for kind, rounds in results.items():
        figures = {key: _median(rounds, key) for key in rounds[0]}
        print(f"flows_per_s_32_clients_3_elements_{kind}: {figures['flows_per_s']:.1f} flows/s")
        print(f"  per round: {' / '.join(f'{r["flows_per_s"]:.1f}' for r in rounds)}")
        print(f"server_cpu_per_flow_{kind}: {figures['server_cpu_ms_per_flow']:.1f} ms")
        for q in ("p50", "p95", "p99"):
            print(f"relay_send_to_backend2_{q}_{kind}: {figures[f'relay_{q}']:.2f} ms")
        print(f"relay_samples_{kind}: {sum(r['relay_samples'] for r in rounds):.0f} tokens")
        for q in ("p50", "p99"):
            print(f"store_commit_1_event_{q}_{kind}: {figures[f'commit_{q}']:.3f} ms")
        if "write_transactions_per_flow" in figures:
            print(f"write_transactions_per_token_{kind}: {figures['write_transactions_per_token']:.2f} tx")
            print(f"write_transactions_per_flow_{kind}: {figures['write_transactions_per_flow']:.2f} tx")
            print(f"write_transactions_per_s_{kind}: {figures['write_transactions_per_s']:.0f} tx/s")
    base = results["memory"]
    for kind in STORES[1:]:
        if kind not in results:
            continue
        rounds = results[kind]
        ratios = [r["flows_per_s"] / b["flows_per_s"] for r, b in zip(rounds, base, strict=True)]
        ratio = statistics.median(ratios)
        cpu_ratio = _median(rounds, "server_cpu_ms_per_flow") / _median(base, "server_cpu_ms_per_flow")
        p50_delta = _median(rounds, "relay_p50") - _median(base, "relay_p50")
        p99_delta = _median(rounds, "relay_p99") - _median(base, "relay_p99")
        print(f"flows_per_s_{kind}_vs_memory: {ratio:.2f} × (per round: {' / '.join(f'{x:.2f}' for x in ratios)})")
        print(f"server_cpu_per_flow_{kind}_vs_memory: {cpu_ratio:.2f} ×")
        print(f"relay_p50_{kind}_minus_memory: {p50_delta:.2f} ms")
        print(f"relay_p99_{kind}_minus_memory: {p99_delta:.2f} ms")
        print(f"goal_flows_{kind}: {'met' if ratio >= GOAL_FLOWS_RATIO else 'not met'}")
        print(f"goal_relay_{kind}: {'met' if p99_delta <= GOAL_RELAY_P99_MS else 'not met'}")


def main() -> None:
    from tests.fixtures.bedrock import bedrock_env_at
    from tests.fixtures.postgres import EmbeddedPostgres

    results: dict[str, list[dict[str, float]]] = {kind: [] for kind in STORES}
    postgres = EmbeddedPostgres()
    pg_url = postgres.start()
    try:
        fake = FakeProcess(TextScript(chunks=[f"w{i} " for i in range(CHUNKS)], delay=DELAY, stamp=True))
        with fake as url:
            common = bedrock_env_at(url) | {"AWS_EC2_METADATA_DISABLED": "true"}
            for round_ in range(ROUNDS):
                for kind in STORES:
                    env = common | {"RUN_STORE": kind}
                    with tempfile.TemporaryDirectory(prefix="bench-run-store-") as data_dir:
                        env["DATA_DIR"] = data_dir
                        if kind == "postgres":
                            env["RUN_STORE_URL"] = pg_url
                        results[kind].append(run_store(env, pg_url if kind == "postgres" else None, {fake.pid}))
                    print(f"round {round_ + 1}, {kind}: measured", file=sys.stderr, flush=True)
    finally:
        postgres.remove()
    report(results)


if __name__ == "__main__":
    main()
