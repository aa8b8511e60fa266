"""A 3-node Ray cluster (ray.cluster_utils.Cluster) runs flows; custom code lands on the sandbox node."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray
def test_flows_run_on_a_cluster_and_custom_code_lands_on_the_sandbox_node():
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.multinode_check"], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))
    assert result["status"] == 200
    assert result["nodes"] == 3
    assert result["outputs"] == {"y": 42}
    assert result["seqs"] == list(range(1, len(result["seqs"]) + 1))
    assert result["sandbox_on_sandbox_node"] is True
