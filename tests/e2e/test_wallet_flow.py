"""The wallet flow end to end through HTTP, Ray, the SQLite run store, a websockets Backend 2
and the fake Aptos node: `aptos_transaction` builds a transfer, the flow pauses at
`wait_for_input` while a wallet (an aptos-sdk account, never the service's key) signs its
`signing_message`, the resume brings the signature, and `aptos_submit` submits it — the node
verifies the signature. A signature of another key is refused before anything is submitted."""

import httpx
import pytest
from aptos_sdk.account import Account

from tests.e2e.test_e2e import new_id, post

pytestmark = pytest.mark.ray

BOB = "0x" + "b0" * 32


def wallet_flow(backend2, flow_id, sender):
    elements = {
        "start": {"type": "start"},
        "who": {"type": "data_block", "data": {"address": sender}},
        "pay": {
            "type": "aptos_transaction",
            "function": "0x1::aptos_account::transfer",
            "sender_input": "address",
            "arguments": [{"type": "address", "value": BOB}, {"type": "u64", "value": "250000"}],
        },
        "wallet": {
            "type": "wait_for_input",
            "prompt": "Sign {signing_message}",
            "input_schema": {
                "signature": {"type": "string", "required": True},
                "public_key": {"type": "string", "required": True},
            },
        },
        "send": {"type": "aptos_submit", "wait_seconds": 10},
        "end": {"type": "end"},
    }
    connections = [
        {"from_id": "start", "to_id": "who"},
        {"from_id": "who", "to_id": "pay"},
        {"from_id": "pay", "to_id": "wallet"},
        {"from_id": "pay", "to_id": "send", "from_output": "raw_transaction_bcs", "to_input": "raw_transaction_bcs"},
        {"from_id": "wallet", "to_id": "send", "from_output": "signature", "to_input": "signature"},
        {"from_id": "wallet", "to_id": "send", "from_output": "public_key", "to_input": "public_key"},
        {"from_id": "send", "to_id": "end"},
    ]
    return {
        "flow_id": flow_id,
        "flow_definition": {
            "flow_id": flow_id,
            "elements": {k: {"element_id": k, **v} for k, v in elements.items()},
            "connections": connections,
            "start_element_id": "start",
        },
        "initial_inputs": {},
        "backend2_ws_url": backend2.url(f"ws/{flow_id}"),
    }


def sign_when_paused(service, backend2, fake_aptos, signer=None):
    wallet = Account.generate()
    fake_aptos.reset()
    fake_aptos.add_account(str(wallet.address()), sequence_number=2, balance=10_000_000)
    flow_id = new_id("wallet")
    assert post(service, wallet_flow(backend2, flow_id, str(wallet.address()))).status_code == 200
    events = backend2.wait_for(f"ws/{flow_id}", lambda ev: any(e["type"] == "flow_paused" for e in ev), 30)
    paused = [e for e in events if e["type"] == "flow_paused"][0]
    message = paused["data"]["prompt"].removeprefix("Sign 0x")
    signature = (signer or wallet).sign(bytes.fromhex(message))
    inputs = {"signature": "0x" + signature.data().hex(), "public_key": str(wallet.public_key())}
    answer = httpx.post(
        f"{service}/flows/{flow_id}/resume", json={"element_id": "wallet", "inputs": inputs}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return flow_id, sorted(backend2.wait_for_completion(f"ws/{flow_id}", timeout=60), key=lambda e: e["seq"])


def test_a_wallet_signs_while_the_flow_waits_and_the_node_verifies_it(service, backend2, fake_aptos):
    _flow_id, events = sign_when_paused(service, backend2, fake_aptos)
    final = events[-1]["data"]
    assert final["status"] == "completed", final
    assert final["outputs"]["success"] is True and final["outputs"]["transaction_hash"].startswith("0x")
    (signed,) = fake_aptos.submitted  # recorded only once the node verified the signature
    assert signed.hash() == final["outputs"]["transaction_hash"]


def test_a_signature_of_another_key_is_refused_before_submitting(service, backend2, fake_aptos):
    _flow_id, events = sign_when_paused(service, backend2, fake_aptos, signer=Account.generate())
    assert events[-1]["data"]["status"] == "failed"
    error = [e for e in events if e["type"] == "element_error"][0]
    assert error["element_id"] == "send" and error["data"]["error_type"] == "invalid_signature"
    assert not fake_aptos.submitted
