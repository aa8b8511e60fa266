"""LLM flows end to end through HTTP, Ray and a websockets Backend 2, with the fake Bedrock."""

import json

import pytest

from tests.e2e.test_e2e import EXAMPLES, llm_flow, new_id, post

pytestmark = pytest.mark.ray


def test_seed_flow_streams_tokens_between_started_and_completed(service, backend2, fake_bedrock):
    fake_bedrock.reset()
    body = llm_flow(backend2, fake_bedrock, chunks=12, delay=0.01)
    flow_id = body["flow_id"]
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    llm = [e for e in events if e.get("element_id") == "llm-1"]
    kinds = [e["type"] for e in llm]
    assert kinds[0] == "element_started" and kinds[-1] == "element_completed"
    chunks = [e for e in llm if e["type"] == "llm_chunk"]
    assert len(chunks) >= 5 and set(kinds[1:-1]) == {"llm_chunk"}
    assert [c["data"]["index"] for c in chunks] == list(range(len(chunks)))
    text = "".join(c["data"]["chunk"] for c in chunks)
    assert text == llm[-1]["data"]["outputs"]["llm_output"]
    assert events[-1]["data"]["outputs"] == {"text_output": text}
    prompt = json.dumps(fake_bedrock.requests[-1].body)
    assert "Generate a response to: Hello, how are you today?" in prompt


def test_two_llm_branches_stream_interleaved_each_with_its_own_index(service, backend2, fake_bedrock):
    fake_bedrock.reset()
    body = json.loads((EXAMPLES / "seed_llm.json").read_text())
    flow_id = new_id("two-llm")
    body["flow_id"] = body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = backend2.url(f"ws/{flow_id}")
    elements = body["flow_definition"]["elements"]
    elements["llm-2"] = {**elements["llm-1"], "element_id": "llm-2"}
    elements["merge"] = {"type": "merger", "element_id": "merge", "strategy": "string", "separator": "|"}
    body["flow_definition"]["connections"] = [
        {"from_id": "start-1", "to_id": "llm-1"},
        {"from_id": "start-1", "to_id": "llm-2"},
        {"from_id": "llm-1", "to_id": "merge", "from_output": "llm_output", "to_input": "a"},
        {"from_id": "llm-2", "to_id": "merge", "from_output": "llm_output", "to_input": "b"},
        {"from_id": "merge", "to_id": "end-1", "from_output": "merged", "to_input": "text_input"},
    ]
    fake_bedrock.script_text([f"t{i} " for i in range(20)], delay=0.03)
    assert post(service, body).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events[-1]["data"]["status"] == "completed"
    chunks = [e for e in events if e["type"] == "llm_chunk"]
    owners = [c["element_id"] for c in chunks]
    assert set(owners) == {"llm-1", "llm-2"}
    switches = sum(a != b for a, b in zip(owners, owners[1:], strict=False))
    assert switches >= 5, "the two streams should interleave, not run one after the other"
    for element in ("llm-1", "llm-2"):
        indexes = [c["data"]["index"] for c in chunks if c["element_id"] == element]
        assert indexes == list(range(len(indexes)))
