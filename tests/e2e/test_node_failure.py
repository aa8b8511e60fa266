"""A node dies under a streaming flow: the run moves to a surviving node and Backend 2 loses nothing.

The check runs in a process of its own (`tests.e2e.node_failure_check`: a 3-node
ray.cluster_utils.Cluster, which cannot share the session's Ray runtime).
"""

import pytest

from tests.e2e.cluster_checks import run_check
from tests.e2e.node_failure_check import CHUNKS


@pytest.mark.ray
def test_the_node_of_a_flows_coordinator_and_streamer_dies_mid_stream_and_the_flow_completes_elsewhere():
    seen = run_check("tests.e2e.node_failure_check")
    assert seen["status"] == 200 and seen["nodes"] == 3
    assert len(seen["coordinator_nodes"]) >= 2, "the coordinators were not spread over the nodes"
    assert seen["colocated"] >= 1, f"no streamer was placed on its coordinator's node: {seen['placed']}"
    assert seen["victim_was_worker"]
    assert seen["victim_node"] not in (seen["coordinator_after"], seen["streamer_after"])
    assert seen["seqs"] == list(range(1, len(seen["seqs"]) + 1)), "Backend 2 missed an event"
    assert seen["last"]["type"] == "flow_completed" and seen["last"]["data"]["status"] == "completed", seen["last"]
    assert seen["run_status"] == "completed"
    script = [f"tok{i} " for i in range(CHUNKS)]
    assert seen["chunks"][-CHUNKS:] == script  # the element ran again from its start, every token relayed
    assert seen["resumed"].count(True) == 1  # the LLM element, running at the crash, says it was re-run
    assert seen["last"]["data"]["outputs"] == {"text_output": "".join(script)}
