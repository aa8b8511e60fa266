"""CPU per relayed LLM token (`llm_chunk`) through the whole service, by process kind, beside the
CPU of the fakes (`python -m bench.bench_llm_service --tokens`).

Rounds of `--token-flows` seed LLM flows posted at once, alternately long (`--deltas` deltas,
default 200) and short (`SHORT_DELTAS`), every delta `--delay` seconds apart (default 10 ms), a
pair per `--rounds`. For each round: the CPU seconds (user + system, psutil) every process
spent from the first POST until `SETTLE` seconds after the last `flow_completed` reached
Backend 2, by kind — `coordinator` (the `FlowCoordinator` actors: botocore's parsing of the
stream included), `streamer` (`Backend2Streamer`), `ingress` (Serve's proxy and the ingress
replica), `ray_misc` (GCS, raylet, Serve's controller, agents, idle workers) — and, apart, the
fakes: `fake_bedrock` and `backend2` (the websockets Backend 2, its arrival reports included).
Tokens are the stamped `llm_chunk` events Backend 2 received.

Figures, per kind and summed over the service (`service`, the fakes excluded):
- `token_cpu_all_in_*`: the long rounds' CPU / their tokens — a flow's own cost (POST, start,
  Bedrock request, WebSocket connection) spread over its deltas;
- `token_cpu_marginal_*`: (long − short CPU) / (long − short tokens) — what one more token
  costs, the per-flow cost taken out.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from bench.bench_llm import FakeProcess
from bench.bench_peer import cpu_by_kind, process_seconds
from bench.bench_service import Arrivals, Backend2Process
from tests.fakes.bedrock_server import TextScript

SHORT_DELTAS = 10
SETTLE = 0.6  # after the last flow_completed: the streamer's closes and delivered-seq writes
KINDS = ("coordinator", "streamer", "ingress", "ray_misc")


def kind_of(name: str) -> str:
    """A process kind of `bench_peer.cpu_by_kind` (actor class or process name) → ours."""
    if name.startswith("FlowCoordinator"):
        return "coordinator"
    if name.startswith("Backend2Streamer"):
        return "streamer"
    if "ProxyActor" in name or "FlowExecutor" in name or name.startswith("ServeReplica"):
        return "ingress"
    return "ray_misc"


@dataclass
class CpuSample:
    """CPU seconds by kind; `fakes` apart (fake Bedrock, Backend 2)."""

    by_kind: dict[str, float] = field(default_factory=dict)
    by_fake: dict[str, float] = field(default_factory=dict)

    @property
    def service(self) -> float:
        return sum(self.by_kind.values())

    @property
    def fakes(self) -> float:
        return sum(self.by_fake.values())

    def kinds(self) -> Iterator[tuple[str, float]]:
        yield from ((kind, self.by_kind.get(kind, 0.0)) for kind in KINDS)
        yield from self.by_fake.items()

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(
            {k: v - other.by_kind.get(k, 0.0) for k, v in self.by_kind.items()},
            {k: v - other.by_fake.get(k, 0.0) for k, v in self.by_fake.items()},
        )

    def __add__(self, other: CpuSample) -> CpuSample:
        keys = set(self.by_kind) | set(other.by_kind)
        fakes = set(self.by_fake) | set(other.by_fake)
        return CpuSample(
            {k: self.by_kind.get(k, 0.0) + other.by_kind.get(k, 0.0) for k in keys},
            {k: self.by_fake.get(k, 0.0) + other.by_fake.get(k, 0.0) for k in fakes},
        )


class CpuMeter:
    """Samples every descendant of this process: the service's by kind, the fakes apart."""

    def __init__(self, fakes: dict[str, int]):
        self.fakes = fakes  # name → pid

    def sample(self) -> CpuSample:
        kinds: dict[str, float] = {}
        for name, seconds in cpu_by_kind(set(self.fakes.values())).items():
            kinds[kind_of(name)] = kinds.get(kind_of(name), 0.0) + seconds
        return CpuSample(kinds, {name: process_seconds(pid) for name, pid in self.fakes.items()})


async def _round(
    base: str, backend2: Backend2Process, arrivals: Arrivals, meter: CpuMeter, flows: int
) -> tuple[CpuSample, int]:
    from bench.bench_llm_service import all_at_once  # here: that module imports this one

    await asyncio.sleep(SETTLE)
    tokens0, before = len(arrivals.relay_ms), meter.sample()
    await all_at_once(base, backend2, arrivals, flows, posters=flows)
    await asyncio.sleep(SETTLE)
    return meter.sample() - before, len(arrivals.relay_ms) - tokens0


def _script(deltas: int, delay: float) -> TextScript:
    return TextScript(chunks=[f"w{i} " for i in range(deltas)], delay=delay, stamp=True)


async def measure_tokens(
    base: str,
    backend2: Backend2Process,
    arrivals: Arrivals,
    meter: CpuMeter,
    fake: FakeProcess,
    args: argparse.Namespace,
) -> None:
    fake.script(_script(SHORT_DELTAS, args.delay))
    await _round(base, backend2, arrivals, meter, args.token_flows)  # warm: clients, connections
    spent = {"long": CpuSample(), "short": CpuSample()}
    tokens = {"long": 0, "short": 0}
    seconds = 0.0
    for _ in range(args.rounds):
        for name, deltas in (("long", args.deltas), ("short", SHORT_DELTAS)):
            fake.script(_script(deltas, args.delay))
            t0 = time.perf_counter()
            cpu, count = await _round(base, backend2, arrivals, meter, args.token_flows)
            if name == "long":
                seconds += time.perf_counter() - t0 - 2 * SETTLE
                print(f"token_round_long_service_cpu_per_token: {cpu.service * 1000 / max(count, 1):.4f} ms")
            spent[name] += cpu
            tokens[name] += count
    long, short = spent["long"], spent["short"]
    extra = max(tokens["long"] - tokens["short"], 1)
    print(
        f"token_setup: {args.rounds} x {args.token_flows} flows x {args.deltas} deltas {args.delay * 1000:g} ms apart"
    )
    print(f"token_rate_long_rounds: {tokens['long'] / max(seconds, 1e-9):.0f} tokens/s")
    print(f"token_count_long_short: {tokens['long']} / {tokens['short']} tokens")
    print(f"token_cpu_all_in_service: {long.service * 1000 / max(tokens['long'], 1):.4f} ms")
    print(f"token_cpu_marginal_service: {(long.service - short.service) * 1000 / extra:.4f} ms")
    print(f"token_cpu_all_in_fakes: {long.fakes * 1000 / max(tokens['long'], 1):.4f} ms")
    print(f"token_cpu_marginal_fakes: {(long.fakes - short.fakes) * 1000 / extra:.4f} ms")
    diff = long - short
    for kind, kind_cpu in long.kinds():
        print(f"token_cpu_all_in_{kind}: {kind_cpu * 1000 / max(tokens['long'], 1):.4f} ms")
    for kind, kind_cpu in diff.kinds():
        print(f"token_cpu_marginal_{kind}: {kind_cpu * 1000 / extra:.4f} ms")
