"""Overhead of one `custom_code` run (trivial code), from element start to result.

- `sandbox_client_*`: `CustomCodeElement.execute` with the in-process `SandboxClient` (fork
  server in a subprocess of this process; one forked, locked-down child per run).
- `sandbox_actor_*`: the same element with the Ray runtime's client: an actor call to the
  sandbox actor, which owns the fork server (what a flow under Ray does).
- `concurrent_50_*`: 50 runs started at once, total time until the last result.
- `fork_server_start`: time for the first run of a new client (the fork server starts).
- `isolation_<level>_{paced,back_to_back}_p50/p95`: runs straight through a `SandboxClient`
  (no element, no Ray), with the OS isolation on (`auto`: namespaces+seccomp, or Landlock)
  beside off (`restricted-python-only`), in the same process and run. `paced`: one run every
  50 ms (a flow's custom-code element; the fork server has its spare runs ready); `back_to_back`:
  each run starts when the last answered (throughput of one caller: every run pays for the
  fork of its replacement).

Prints `name: value unit` lines. `python -m bench.bench_custom_code [--runs 300] [--no-ray]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from elements.custom_code import CustomCodeConfig, CustomCodeElement
from engine.element import ElementContext
from engine.models import ElementDefinition
from engine.settings import Settings
from services.hub import ServiceHub

CODE = "def main(inputs):\n    return {'doubled': inputs['n'] * 2}"


def _element() -> CustomCodeElement:
    definition = ElementDefinition.model_validate({"element_id": "code", "type": "custom_code", "code": CODE})
    return CustomCodeElement(definition, CustomCodeConfig(code=CODE))


def _percentile(samples: list[float], pct: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(pct) - 1]


async def _measure(name: str, sandbox: Any, runs: int) -> None:
    settings = Settings(_env_file=None)
    ctx = ElementContext("bench", "code", settings, ServiceHub(settings, sandbox=sandbox))
    element = _element()
    for n in range(10):  # warm-up
        await element.execute({"n": n}, ctx)
    samples = []
    for n in range(runs):
        t0 = time.perf_counter()
        outputs = await element.execute({"n": n}, ctx)
        samples.append((time.perf_counter() - t0) * 1000)
        assert outputs == {"doubled": n * 2}
    print(f"{name}_p50: {_percentile(samples, 50):.2f} ms")
    print(f"{name}_p95: {_percentile(samples, 95):.2f} ms")
    t0 = time.perf_counter()
    results = await asyncio.gather(*(element.execute({"n": n}, ctx) for n in range(50)))
    print(f"concurrent_50_{name}: {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert [r["doubled"] for r in results] == [n * 2 for n in range(50)]


async def _in_process(runs: int) -> None:
    from services.sandbox.client import SandboxClient

    client = SandboxClient()
    t0 = time.perf_counter()
    await client.run("outputs = {}", {}, memory_mb=100, cpu_seconds=5, timeout=10)
    print(f"fork_server_start: {(time.perf_counter() - t0) * 1000:.0f} ms")
    try:
        await _measure("sandbox_client", client, runs)
    finally:
        await client.aclose()


async def _isolation_levels(runs: int) -> None:
    import os

    from services.sandbox.client import SandboxClient

    for level in ("auto", "restricted-python-only"):
        os.environ["CUSTOM_CODE_ISOLATION"] = level
        client = SandboxClient()
        try:
            await client.start()
            for n in range(10):
                await client.run(CODE, {"n": n}, memory_mb=100, cpu_seconds=5, timeout=10)
            for pacing, gap in (("paced", 0.05), ("back_to_back", 0.0)):
                samples = []
                for n in range(runs):
                    t0 = time.perf_counter()
                    result = await client.run(CODE, {"n": n}, memory_mb=100, cpu_seconds=5, timeout=10)
                    samples.append((time.perf_counter() - t0) * 1000)
                    assert result["outputs"] == {"doubled": n * 2}
                    await asyncio.sleep(gap)
                name = f"isolation_{client.isolation}_{pacing}"
                print(f"{name}_p50: {_percentile(samples, 50):.2f} ms")
                print(f"{name}_p95: {_percentile(samples, 95):.2f} ms")
        finally:
            await client.aclose()
            os.environ.pop("CUSTOM_CODE_ISOLATION", None)


async def _through_ray(runs: int) -> None:
    from actors.sandbox import SandboxActorClient

    await _measure("sandbox_actor", SandboxActorClient(Settings(_env_file=None), name="bench-sandbox"), runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    asyncio.run(_isolation_levels(args.runs))
    asyncio.run(_in_process(args.runs))
    if args.no_ray:
        return
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        asyncio.run(_through_ray(args.runs))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
