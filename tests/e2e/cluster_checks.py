"""What the multi-node checks share: the service on a `ray.cluster_utils.Cluster` of this machine,
checked in a process of its own (a cluster cannot share the test session's Ray runtime).

- `run_check(module)` (in a test): runs `python -m module`, fails with the end of its stderr when
  it fails, and returns the JSON line it printed.
- `serving(cluster)` (in a check): waits for the cluster's nodes, connects to it, deploys the
  service behind Serve's proxy on a free loopback port and yields that port; on leaving, shuts
  Serve, Ray and the cluster down.
- `start_fakes(coordinator_count, store_prefix)` (in a check, before the cluster starts): the fake
  Bedrock and Backend 2, and the environment every process of the cluster inherits (quiet logs,
  the pool's size, a SQLite store of its own, the fake Bedrock's endpoint).
- `exit_with(main)`: a check's `__main__`: runs it, says how long it took, exits with its code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_check(module: str, timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", module], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))


@contextmanager
def serving(cluster: Any) -> Iterator[int]:
    import ray
    from ray import serve

    from tests.fixtures.service import free_port

    cluster.wait_for_nodes()  # every node registered before the service's actors spread over them
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        import serve_app

        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        serve.run(serve_app.app, name="flow-executor", route_prefix="/")
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()


def exit_with(main: Callable[[], int]) -> None:
    t0 = time.monotonic()
    code = main()
    print(f"took {time.monotonic() - t0:.1f} s", file=sys.stderr)
    sys.exit(code)


def start_fakes(coordinator_count: str, store_prefix: str) -> tuple[Any, Any]:
    """`(fake Bedrock, fake Backend 2)`, started, with this process's environment set for the cluster."""
    from tests.fakes.backend2 import FakeBackend2
    from tests.fakes.bedrock_server import FakeBedrock
    from tests.fixtures.bedrock import bedrock_env

    os.environ["LOG_LEVEL"] = "WARNING"  # set here, in the check's process: the test imports the check
    os.environ["COORDINATOR_COUNT"] = coordinator_count
    os.environ["RUN_STORE"] = "sqlite"
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix=store_prefix)
    bedrock = FakeBedrock().start()
    os.environ.update(bedrock_env(bedrock) | {"AWS_EC2_METADATA_DISABLED": "true"})
    return bedrock, FakeBackend2().start()
