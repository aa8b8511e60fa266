"""The example flows run in-process (no Ray) with the built-in elements."""

import json
from pathlib import Path

from tests.engine_doubles import assert_well_formed, run_local

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name):
    return json.loads((EXAMPLES / name).read_text())


async def test_branching_case_takes_the_vip_branch_and_skips_the_others():
    snapshot, events = await run_local(load("branching_case.json"))
    assert_well_formed(events)
    assert snapshot["status"] == "completed"
    assert snapshot["outputs"] == {"decision": "VIP customer: thank them."}
    skipped = {e.element_id for e in events if e.type == "element_skipped"}
    assert skipped == {"big_note", "default_note"}


async def test_parallel_branches_merge():
    snapshot, events = await run_local(load("parallel_merge.json"))
    assert_well_formed(events)
    result = snapshot["outputs"]["result"]
    assert result["name"] == "Ada" and 1 <= result["dice"] <= 6 and result["plan"] == "pro"
    assert len(result["ticket"]) == 36


async def test_seed_flow_with_a_data_stand_in_for_the_llm_renames_at_the_end():
    body = load("seed_llm.json")
    body["flow_definition"]["elements"]["llm-1"] = {
        "type": "data_block",
        "element_id": "llm-1",
        "data": {"llm_output": "a stand-in answer"},
    }
    snapshot, events = await run_local(body)
    assert_well_formed(events)
    assert snapshot["outputs"] == {"text_output": "a stand-in answer"}
    assert events[-1].data["outputs"] == {"text_output": "a stand-in answer"}
