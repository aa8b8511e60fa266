"""A 4-node Ray cluster (ray.cluster_utils.Cluster) runs flows; custom code lands on both sandbox
nodes and nowhere else, and a run whose sandbox node leaves the cluster finishes on the other."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray
def test_flows_run_on_a_cluster_and_custom_code_is_spread_over_the_sandbox_nodes():
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.multinode_check"], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["status"] == 200
    assert result["nodes"] == 4
    assert result["outputs"] == {"x": 42}
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))
    assert result["service_runs"] == {"sandbox-0": 2, "sandbox-1": 2}  # one coordinator's four runs, in turn
    assert result["health"]["custom_code_isolation"] != "unknown"  # asked of both sandbox actors
    moved = result["moved"]
    assert moved["outputs"] == {"n": 20_000_000}  # the run came back whole, from the node that stayed
    stayed = ({"sandbox-0", "sandbox-1"} - {moved["removed"]}).pop()
    assert moved["runs"] == {stayed: 2}  # its warm-up run and the run moved to it; the removed node is gone
