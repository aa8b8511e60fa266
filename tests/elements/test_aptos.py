"""aptos_read and aptos_transaction against the fake node, with aptos-sdk for real."""

import logging
import time

import pytest
from aptos_sdk.account import Account
from aptos_sdk.bcs import Deserializer
from aptos_sdk.ed25519 import Signature
from aptos_sdk.transactions import RawTransaction
from pydantic import ValidationError

from engine.element import ElementContext
from engine.errors import ElementError, TransientError
from services.hub import ServiceHub
from tests.element_helpers import make_element
from tests.fixtures.aptos import aptos_settings

ALICE = "0x" + "a1" * 32
BOB = "0xb0b"


def ctx_for(settings, hub):
    return ElementContext(flow_id="f", element_id="e", settings=settings, services=hub)


async def run(node, type_, inputs=None, settings_overrides=None, **config):
    settings = aptos_settings(node, **(settings_overrides or {}))
    hub = ServiceHub(settings)
    try:
        return await make_element(type_, **config).execute(inputs or {}, ctx_for(settings, hub))
    finally:
        await hub.aclose()


async def test_account_balance_resource_resources(aptos_node):
    alice = aptos_node.add_account(ALICE, sequence_number=5, balance=123_456)
    account = await run(aptos_node, "aptos_read", {"address": ALICE}, operation="account")
    assert account == {"address": alice, "sequence_number": 5, "authentication_key": alice}
    balance = await run(aptos_node, "aptos_read", {}, operation="balance", address=ALICE)
    assert balance["balance"] == 123_456 and balance["coin_type"] == "0x1::aptos_coin::AptosCoin"
    resource = await run(
        aptos_node, "aptos_read", {"address": ALICE}, operation="resource", resource_type="0x1::account::Account"
    )
    assert resource["data"] == {"sequence_number": "5"}
    resources = await run(aptos_node, "aptos_read", {"address": ALICE}, operation="resources")
    assert resources["count"] == 2
    # the base URL had no /v1: the service added it
    assert ("GET", f"/v1/accounts/{alice}") in aptos_node.requests


async def test_view_function_with_type_arguments(aptos_node):
    aptos_node.add_account(BOB, balance=42)
    out = await run(
        aptos_node, "aptos_read", operation="view", function="0x1::coin::balance",
        type_arguments=["0x1::aptos_coin::AptosCoin"], arguments=[BOB],
    )  # fmt: skip
    assert out == {"result": ["42"], "value": "42"}


async def test_transaction_by_hash_and_not_found(aptos_node):
    aptos_node.transactions["0xabc"] = {
        "type": "user_transaction",
        "success": True,
        "vm_status": "Executed successfully",
    }
    out = await run(aptos_node, "aptos_read", {"transaction_hash": "0xabc"}, operation="transaction")
    assert out["success"] is True
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_read", {"address": "0xdead"}, operation="account")
    assert raised.value.error_type == "not_found"


async def test_bad_address_fails_before_any_request(aptos_node):
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_read", {"address": "not-an-address"}, operation="balance")
    assert raised.value.error_type == "invalid_argument" and "'address'" in raised.value.message
    assert aptos_node.requests == []


@pytest.mark.parametrize(
    "config",
    [
        {"operation": "view", "function": "coin::balance"},
        {"operation": "view", "function": "0x1::coin::balance", "type_arguments": ["not a type"]},
        {"operation": "resource"},
        {"operation": "teleport"},
    ],
)
def test_bad_read_config_is_a_validation_error(config):
    with pytest.raises(ValidationError):
        make_element("aptos_read", **config)


def transfer_config(**extra):
    return {
        "function": "0x1::aptos_account::transfer",
        "arguments": [{"type": "address", "input": "to"}, {"type": "u64", "value": "1000"}],
        **extra,
    }


async def test_transaction_is_built_offline_deserializable_and_signable(aptos_node):
    out = await run(
        aptos_node, "aptos_transaction", {"to": BOB},
        **transfer_config(sender=ALICE, sequence_number=3, chain_id=4),
    )  # fmt: skip
    assert aptos_node.requests == []  # nothing asked of the node
    raw = RawTransaction.deserialize(Deserializer(bytes.fromhex(out["raw_transaction_bcs"][2:])))
    assert str(raw.sender) == out["sender"] and raw.sequence_number == 3 and raw.chain_id == 4
    assert bytes.fromhex(out["signing_message"][2:]) == raw.keyed()
    assert out["payload"]["arguments"] == [
        {"type": "address", "value": "0x0000000000000000000000000000000000000000000000000000000000000b0b"},
        {"type": "u64", "value": 1000},
    ]
    wallet = Account.generate()
    signature = wallet.sign(bytes.fromhex(out["signing_message"][2:]))
    assert wallet.public_key().verify(raw.keyed(), Signature(signature.data()))


async def test_sequence_number_and_chain_id_come_from_the_node_when_not_given(aptos_node):
    aptos_node.add_account(ALICE, sequence_number=9)
    out = await run(aptos_node, "aptos_transaction", {"to": BOB, "sender": ALICE}, **transfer_config())
    assert out["sequence_number"] == 9 and out["chain_id"] == 4


async def test_simulate(aptos_node):
    wallet = Account.generate()
    out = await run(
        aptos_node, "aptos_transaction", {"to": BOB},
        **transfer_config(sender=str(wallet.address()), sequence_number=0, chain_id=4, simulate=True,
                          public_key=str(wallet.public_key())),
    )  # fmt: skip
    assert out["simulation"] == {"success": True, "vm_status": "Executed successfully", "gas_used": 17}


async def test_submit_is_refused_without_both_switches(aptos_node):
    key = Account.generate()
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_transaction", {"to": BOB}, settings_overrides={"aptos_private_key": str(key.private_key)},
                  **transfer_config(submit=True))  # fmt: skip
    assert raised.value.error_type == "submit_disabled" and "APTOS_ALLOW_SUBMIT" in raised.value.message
    out = await run(aptos_node, "aptos_transaction", {"to": BOB}, settings_overrides={"aptos_allow_submit": True},
                    **transfer_config(sender=ALICE, sequence_number=0, chain_id=4))  # fmt: skip
    assert "transaction_hash" not in out and aptos_node.submitted == []


async def test_submit_signs_and_the_node_verifies_the_signature(aptos_node):
    key = Account.generate()
    aptos_node.add_account(str(key.address()), sequence_number=2)
    out = await run(
        aptos_node, "aptos_transaction", {"to": BOB},
        settings_overrides={"aptos_allow_submit": True, "aptos_private_key": str(key.private_key)},
        **transfer_config(submit=True),
    )  # fmt: skip
    assert out["success"] is True and out["status"] == "Executed successfully"
    (signed,) = aptos_node.submitted
    assert signed.verify() and signed.hash() == out["transaction_hash"]
    assert str(signed.transaction.sender) == str(key.address()) and signed.transaction.sequence_number == 2


@pytest.mark.parametrize(
    ("argument", "field"),
    [
        ({"type": "u64", "value": "abc"}, "arguments[0]"),
        ({"type": "u8", "value": 300}, "arguments[0]"),
        ({"type": "address", "value": "nope"}, "arguments[0]"),
        ({"type": "bool", "value": "yes"}, "arguments[0]"),
        ({"type": "vector<u8>", "value": 5}, "arguments[0]"),
        ({"type": "float", "value": 1.5}, "arguments[0]"),
    ],
)
async def test_wrong_argument_types_name_the_argument(aptos_node, argument, field):
    with pytest.raises(ElementError) as raised:
        await run(
            aptos_node,
            "aptos_transaction",
            {},
            function="0x1::m::f",
            arguments=[argument],
            sender=ALICE,
            sequence_number=0,
            chain_id=4,
        )
    assert raised.value.error_type == "invalid_argument" and f"'{field}'" in raised.value.message


def test_bad_function_id_is_a_validation_error():
    with pytest.raises(ValidationError, match="not a function id"):
        make_element("aptos_transaction", function="transfer")


async def test_node_errors_are_transient_after_bounded_retries(aptos_node):
    aptos_node.add_account(ALICE, balance=1)
    aptos_node.fail_next(500, times=10)
    t0 = time.monotonic()
    with pytest.raises(TransientError) as raised:
        await run(aptos_node, "aptos_read", {"address": ALICE}, operation="account")
    assert raised.value.error_type == "node_unavailable" and time.monotonic() - t0 < 5
    aptos_node.failures.clear()
    aptos_node.fail_next(429, times=1)
    assert (await run(aptos_node, "aptos_read", {"address": ALICE}, operation="account"))["sequence_number"] == 0


async def test_node_down_is_an_error_within_seconds():
    from tests.fakes.aptos_node import FakeAptosNode

    node = FakeAptosNode()  # never started: nothing listens on its port
    node.server.server_close()
    t0 = time.monotonic()
    with pytest.raises(TransientError, match="unreachable"):
        await run(node, "aptos_read", {"address": ALICE}, operation="account")
    assert time.monotonic() - t0 < 5


async def test_private_key_appears_nowhere(aptos_node, caplog):
    caplog.set_level(logging.DEBUG)
    key = Account.generate()
    secret = str(key.private_key)
    aptos_node.add_account(str(key.address()))
    out = await run(
        aptos_node, "aptos_transaction", {"to": BOB},
        settings_overrides={"aptos_allow_submit": True, "aptos_private_key": secret},
        **transfer_config(submit=True, simulate=True),
    )  # fmt: skip
    for bad in ("0xZZ", secret[:-2] + "zz"):
        with pytest.raises(ElementError) as raised:
            await run(aptos_node, "aptos_transaction", {"to": BOB},
                      settings_overrides={"aptos_allow_submit": True, "aptos_private_key": bad}, **transfer_config(submit=True))  # fmt: skip
        assert bad not in raised.value.message and raised.value.error_type == "invalid_credentials"
    assert secret not in repr(out) and secret[2:] not in repr(out)
    assert all(secret[2:] not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "call",
    [
        lambda aptos: aptos.account("not-an-address"),
        lambda aptos: aptos.balance("0xZZ", "0x1::aptos_coin::AptosCoin"),
        lambda aptos: aptos.simulate(b"\x01\x02"),
        lambda aptos: aptos.submit(b""),
    ],
)
async def test_the_node_refuses_values_that_do_not_parse_before_any_request(aptos_hub, aptos_node, call):
    with pytest.raises(ElementError) as raised:
        await call(aptos_hub.aptos)
    assert raised.value.error_type == "invalid_argument"
    assert aptos_node.requests == []


async def test_the_signer_refuses_bytes_that_are_not_a_raw_transaction(aptos_node):
    key = Account.generate()
    hub = ServiceHub(aptos_settings(aptos_node, aptos_private_key=str(key.private_key)))
    try:
        signer = hub.aptos.signer()
        assert signer.address() == str(key.address()) and hub.aptos.signer() is signer
        with pytest.raises(ElementError) as raised:
            signer.sign(b"\x00")
        assert raised.value.error_type == "invalid_argument"
    finally:
        await hub.aclose()


async def test_sequence_number_of_an_unknown_account_is_zero(aptos_hub, aptos_node):
    assert await aptos_hub.aptos.sequence_number(ALICE) == 0
