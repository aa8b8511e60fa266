"""A 4-node Ray cluster (ray.cluster_utils.Cluster) runs flows; custom code lands on both sandbox
nodes and nowhere else, and a run whose sandbox node leaves the cluster finishes on the other."""

import pytest

from tests.e2e.cluster_checks import run_check


@pytest.mark.ray
def test_flows_run_on_a_cluster_and_custom_code_is_spread_over_the_sandbox_nodes():
    result = run_check("tests.e2e.multinode_check", timeout=400)
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
