"""The coordinator pool resized under live flows: grown with the cluster, shrunk by the operator,
no flow lost (every seq at Backend 2, each run completed, a paused run handed over and resumed).

The check runs in a process of its own (`tests.e2e.pool_resize_check`: a ray.cluster_utils.Cluster,
which cannot share the session's Ray runtime).
"""

import pytest

from tests.e2e.cluster_checks import run_check


@pytest.mark.ray
def test_the_pool_grows_with_the_cluster_and_shrinks_on_redeploy_without_losing_a_flow():
    seen = run_check("tests.e2e.pool_resize_check")
    assert seen["pool_before"] == [True, True, False]  # auto: one coordinator per two CPUs
    assert seen["health_before"] == 2
    assert seen["grow_post"] == seen["pause_post"] == seen["shrink_post"] == 200
    # its id falls to the new coordinator now, which forwards the calls: the status and the delivery
    # state come from coordinator 1 and its streamer (streamer 2 does not know the flow)
    assert seen["grown_read"] == [200, "running", True], seen
    assert seen["grown_cancel"] == 200
    for flow, end in (("grown", "cancelled"), ("streaming", "completed"), ("waiting", "completed")):
        assert seen[flow]["contiguous"] and seen[flow]["end"] == end, (flow, seen[flow])
    assert seen["resume"] == 200  # the paused run, handed to its heir, goes on from there
    assert seen["pool_after"] == [True, True, False]  # coordinator 2 and its streamer have exited
