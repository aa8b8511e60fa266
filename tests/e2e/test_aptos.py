"""An Aptos flow end to end through HTTP, Ray and a websockets Backend 2."""

import pytest

from tests.e2e.test_e2e import new_id, post

pytestmark = pytest.mark.ray

ALICE = "0x" + "a1" * 32
BOB = "0x" + "b0" * 32


def aptos_flow(backend2, flow_id):
    elements = {
        "start": {"type": "start"},
        "wallet": {"type": "data_block", "data": {"address": ALICE, "recipient": BOB}},
        "read": {"type": "aptos_read", "operation": "balance"},
        "rich": {
            "type": "case",
            "cases": [{"id": "rich", "conditions": [{"field": "balance", "operator": ">", "value": 1_000_000}]}],
        },
        "pay": {
            "type": "aptos_transaction",
            "function": "0x1::aptos_account::transfer",
            "sender_input": "address",
            "arguments": [{"type": "address", "value": BOB}, {"type": "u64", "value": "250000"}],
        },
        "end": {"type": "end"},
    }
    connections = [
        ("start", "wallet", None), ("wallet", "read", None), ("read", "rich", None),
        ("rich", "pay", "rich"), ("pay", "end", None),
    ]  # fmt: skip
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": {k: {"element_id": k, **v} for k, v in elements.items()},
            "connections": [
                {"from_id": a, "to_id": b, **({"from_output": port} if port else {})} for a, b, port in connections
            ],
            "start_element_id": "start",
        },
        "initial_inputs": {},
        "backend2_ws_url": backend2.url(f"ws/{flow_id}"),
    }


def test_balance_over_threshold_builds_a_transaction(service, backend2, fake_aptos):
    fake_aptos.reset()
    fake_aptos.add_account(ALICE, sequence_number=11, balance=5_000_000)
    flow_id = new_id("aptos")
    assert post(service, aptos_flow(backend2, flow_id)).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    final = events[-1]["data"]
    assert final["status"] == "completed", final
    assert final["outputs"]["sequence_number"] == 11 and final["outputs"]["chain_id"] == 4
    assert final["outputs"]["raw_transaction_bcs"].startswith("0x")
    completed = {e["element_id"]: e["data"]["outputs"] for e in events if e["type"] == "element_completed"}
    assert completed["read"]["balance"] == 5_000_000


def test_balance_under_threshold_skips_the_transaction(service, backend2, fake_aptos):
    fake_aptos.reset()
    fake_aptos.add_account(ALICE, balance=10)
    flow_id = new_id("aptos-poor")
    assert post(service, aptos_flow(backend2, flow_id)).status_code == 200
    events = backend2.wait_for_completion(f"ws/{flow_id}")
    assert events[-1]["data"]["status"] == "completed"
    assert {e["element_id"] for e in events if e["type"] == "element_skipped"} == {"pay", "end"}
