"""aptos_submit against the fake node: a transaction built by aptos_transaction, signed by a
wallet (an aptos-sdk account), checked locally, submitted, verified by the node, awaited."""

import time

import pytest
from aptos_sdk.account import Account
from aptos_sdk.authenticator import AccountAuthenticator, Ed25519Authenticator
from aptos_sdk.bcs import Deserializer
from aptos_sdk.ed25519 import Signature
from aptos_sdk.transactions import RawTransaction, SignedTransaction
from pydantic import ValidationError

from elements.aptos_wait import await_transaction
from engine.element import Placement
from engine.errors import ElementError, TransientError
from runtime.catalog import builtin_registry
from tests.element_helpers import make_element
from tests.elements.test_aptos import BOB, run, transfer_config

NO_SERVER_KEY = {"aptos_private_key": None, "aptos_allow_submit": False}


async def wallet_signed(node, wallet, signer=None):
    """aptos_transaction's outputs for `wallet` (built offline: no request) and the inputs of
    aptos_submit: `signing_message` signed by `signer` (the wallet itself by default)."""
    built = await run(
        node, "aptos_transaction", {"to": BOB, "sender": str(wallet.address())},
        **transfer_config(sequence_number=0, chain_id=4),
    )  # fmt: skip
    signature = (signer or wallet).sign(bytes.fromhex(built["signing_message"][2:]))
    return {
        "raw_transaction_bcs": built["raw_transaction_bcs"],
        "signature": "0x" + signature.data().hex(),
        "public_key": str(wallet.public_key()),
    }


def submissions(node):
    return [request for request in node.requests if request == ("POST", "/v1/transactions")]


@pytest.mark.parametrize("prefix", ["0x", ""])
async def test_a_wallet_signed_transaction_is_submitted_verified_and_awaited(aptos_node, prefix):
    wallet = Account.generate()
    inputs = {
        name: prefix + value.removeprefix("0x") for name, value in (await wallet_signed(aptos_node, wallet)).items()
    }
    out = await run(aptos_node, "aptos_submit", inputs, settings_overrides=NO_SERVER_KEY)
    (signed,) = aptos_node.submitted  # recorded only once the node verified it
    assert out == {"transaction_hash": signed.hash(), "success": True, "vm_status": "Executed successfully"}
    assert len(submissions(aptos_node)) == 1 and signed.verify()
    assert str(signed.transaction.sender) == str(wallet.address())
    assert signed.authenticator.authenticator.public_key == wallet.public_key()
    assert ("GET", f"/v1/transactions/by_hash/{out['transaction_hash']}") in aptos_node.requests


@pytest.mark.parametrize("wrong", ["another_key", "another_message"])
async def test_a_signature_that_does_not_verify_is_refused_before_any_request(aptos_node, wrong):
    wallet = Account.generate()
    if wrong == "another_key":
        inputs = await wallet_signed(aptos_node, wallet, signer=Account.generate())
    else:  # the RawTransaction's BCS without the prehash: not the signing message
        inputs = await wallet_signed(aptos_node, wallet)
        inputs["signature"] = "0x" + wallet.sign(bytes.fromhex(inputs["raw_transaction_bcs"][2:])).data().hex()
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_submit", inputs)
    assert raised.value.error_type == "invalid_signature" and "does not verify" in raised.value.message
    assert inputs["signature"][2:] not in raised.value.message
    assert aptos_node.requests == [] and aptos_node.submitted == []


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("signature", "0x" + "zz" * 64, "not hex"),
        ("signature", "0x" + "ab" * 63, "got 63"),
        ("signature", "ab" * 65, "got 65"),
        ("signature", "", "got 0"),
        ("signature", None, "did not arrive"),
        ("public_key", "0x" + "cd" * 31, "got 31"),
        ("public_key", "0x" + "cd" * 33, "got 33"),
        ("public_key", "0x123", "not hex"),
        ("public_key", 12345, "got int"),
    ],
)
async def test_bad_hex_or_wrong_lengths_are_invalid_signature(aptos_node, field, value, says):
    inputs = await wallet_signed(aptos_node, Account.generate())
    if value is None:
        del inputs[field]
    else:
        inputs[field] = value
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_submit", inputs)
    message = raised.value.message
    assert raised.value.error_type == "invalid_signature" and f"'{field}'" in message and says in message
    assert not (isinstance(value, str) and len(value) > 16 and value[2:] in message)  # long hex is never echoed
    assert aptos_node.requests == []


@pytest.mark.parametrize("raw", ["0xdeadbeef", "not hex", "0x", "trailing byte", None])
async def test_a_raw_transaction_that_does_not_decode_is_invalid_argument(aptos_node, raw):
    inputs = await wallet_signed(aptos_node, Account.generate())
    if raw is None:
        del inputs["raw_transaction_bcs"]
    else:
        inputs["raw_transaction_bcs"] = inputs["raw_transaction_bcs"] + "00" if raw == "trailing byte" else raw
    with pytest.raises(ElementError) as raised:
        await run(aptos_node, "aptos_submit", inputs)
    assert raised.value.error_type == "invalid_argument" and "'raw_transaction_bcs'" in raised.value.message
    assert aptos_node.requests == []


async def test_wait_seconds_zero_gives_the_hash_without_waiting(aptos_node):
    inputs = await wallet_signed(aptos_node, Account.generate())
    out = await run(aptos_node, "aptos_submit", inputs, wait_seconds=0)
    (signed,) = aptos_node.submitted
    assert out == {"transaction_hash": signed.hash(), "success": None, "vm_status": None}
    assert aptos_node.requests == [("POST", "/v1/transactions")]  # no look-up of the hash


async def test_node_down_is_node_unavailable_within_seconds(aptos_node):
    from tests.fakes.aptos_node import FakeAptosNode

    inputs = await wallet_signed(aptos_node, Account.generate())
    node = FakeAptosNode()  # never started: nothing listens on its port
    node.server.server_close()
    t0 = time.monotonic()
    with pytest.raises(TransientError) as raised:
        await run(node, "aptos_submit", inputs)
    assert raised.value.error_type == "node_unavailable" and "unreachable" in raised.value.message
    assert time.monotonic() - t0 < 5


async def test_the_node_refuses_a_signature_that_does_not_verify(aptos_hub, aptos_node):
    """The fake node checks signatures itself, so a test of aptos_submit cannot pass by a lax node."""
    wallet, other = Account.generate(), Account.generate()
    inputs = await wallet_signed(aptos_node, wallet)
    raw = RawTransaction.deserialize(Deserializer(bytes.fromhex(inputs["raw_transaction_bcs"][2:])))
    forged = Ed25519Authenticator(wallet.public_key(), Signature(other.sign(raw.keyed()).data()))
    with pytest.raises(ElementError) as raised:
        await aptos_hub.aptos.submit(SignedTransaction(raw, AccountAuthenticator(forged)).bytes())
    assert raised.value.error_type == "node_rejected" and "invalid" in raised.value.message.lower()
    assert len(submissions(aptos_node)) == 1 and aptos_node.submitted == []


async def test_await_transaction_asks_until_committed_or_the_deadline(aptos_hub, aptos_node):
    aptos = aptos_hub.aptos
    assert await await_transaction(aptos, "0xabc", 0) is None and aptos_node.requests == []
    aptos_node.transactions["0xabc"] = {"type": "pending_transaction", "hash": "0xabc"}
    t0 = time.monotonic()
    assert await await_transaction(aptos, "0xabc", 0.3) is None  # still pending
    assert 0.3 <= time.monotonic() - t0 < 2 and len(aptos_node.requests) >= 2
    assert await await_transaction(aptos, "0xdef", 0.3) is None  # not known to the node
    aptos_node.transactions["0xabc"] = {"type": "user_transaction", "success": False, "vm_status": "Move abort"}
    assert (await await_transaction(aptos, "0xabc", 0.3)) == aptos_node.transactions["0xabc"]
    aptos_node.fail_next(400)
    with pytest.raises(ElementError) as raised:
        await await_transaction(aptos, "0xabc", 0.3)
    assert raised.value.error_type == "node_rejected"


@pytest.mark.parametrize("config", [{"wait_seconds": -1}, {"wait_seconds": 601}, {"submit": True}])
def test_bad_submit_config_is_a_validation_error(config):
    with pytest.raises(ValidationError):
        make_element("aptos_submit", **config)


def test_aptos_submit_is_a_built_in_io_element_with_its_outputs():
    cls = builtin_registry().get("aptos_submit")
    assert cls is not None and cls.placement == Placement.IO
    element = make_element("aptos_submit", output_schema={"transaction_hash": {"type": "string"}})
    assert element.output_ports() == {"transaction_hash", "success", "vm_status"}
