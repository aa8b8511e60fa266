"""What the multi-node checks share: the service on a `ray.cluster_utils.Cluster` of this machine,
checked in a process of its own (a cluster cannot share the test session's Ray runtime).

- `run_check(module)` (in a test): runs `python -m module`, fails with the end of its stderr when
  it fails, and returns the JSON line it printed.
- `serving(cluster)` (in a check): waits for the cluster's nodes, connects to it, deploys the
  service behind Serve's proxy on a free loopback port and yields that port; on leaving, shuts
  Serve, Ray and the cluster down.
- `exit_with(main)`: a check's `__main__`: runs it, says how long it took, exits with its code.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
