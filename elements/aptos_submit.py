"""`aptos_submit`: submit a transaction a wallet signed — the second half of the wallet flow
that `aptos_transaction` starts.

Inputs: `raw_transaction_bcs` (hex of the BCS RawTransaction, with or without 0x, as
`aptos_transaction` outputs it), `signature` (hex of the wallet's 64-byte Ed25519 signature of
`signing_message`: the RawTransaction prehash + BCS) and `public_key` (hex of the sender's
32-byte Ed25519 public key). The raw transaction is decoded with aptos-sdk (`invalid_argument`
when it is not one) and the signature checked locally before any request: bad hex, a wrong
length or a signature that does not verify over the signing message is `invalid_signature`,
and nothing reaches the node. Then the SignedTransaction (Ed25519 authenticator) is submitted
and awaited up to `wait_seconds` (0: not awaited).

Outputs: `transaction_hash`, `success` and `vm_status` — both null when not awaited or still
pending at the deadline (the transaction was accepted: the hash is what to look it up by, and
an error here would invite a retry that submits again).

No server key and no switch: the wallet signed, so neither `APTOS_PRIVATE_KEY` nor
`APTOS_ALLOW_SUBMIT` (which guards signing with the service's own key) is needed. Node errors
come mapped as for `aptos_read` (`node_unavailable`, `node_rejected`, `not_found`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aptos_sdk.authenticator import AccountAuthenticator, Ed25519Authenticator
from aptos_sdk.bcs import Deserializer
from aptos_sdk.ed25519 import PublicKey, Signature
from aptos_sdk.transactions import RawTransaction, SignedTransaction
from pydantic import BaseModel, ConfigDict, Field

from elements.aptos_values import invalid
from elements.aptos_wait import await_transaction
from engine.element import ElementBase, ElementContext, Placement
from engine.errors import ElementError

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


class AptosSubmitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    wait_seconds: float = Field(default=30, ge=0, le=600)


def invalid_signature(field: str, message: str) -> ElementError:
    return ElementError(f"'{field}': {message}", error_type="invalid_signature")


def _hex_input(inputs: dict[str, Any], field: str, error: Callable[[str, str], ElementError]) -> bytes:
    """The bytes of the hex string in input `field` (0x optional); `error(field, …)` otherwise."""
    value = inputs.get(field)
    if value is None:
        raise error(field, f"input '{field}' did not arrive")
    if not isinstance(value, str):
        raise error(field, f"needs a hex string, got {type(value).__name__}")
    digits = value[2:] if value[:2].lower() == "0x" else value
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise error(field, "is not hex (an even number of hex digits, 0x optional)") from None


def _sized(data: bytes, field: str, size: int) -> bytes:
    if len(data) != size:
        raise invalid_signature(field, f"needs {size} bytes ({2 * size} hex digits), got {len(data)}")
    return data


def _raw_transaction(data: bytes) -> RawTransaction:
    """The RawTransaction the bytes hold, all of them; else `invalid_argument`."""
    deserializer = Deserializer(data)
    try:
        raw = RawTransaction.deserialize(deserializer)
    except Exception:
        raw = None
    if raw is None or deserializer.remaining():
        raise invalid("raw_transaction_bcs", "is not a BCS RawTransaction (give aptos_transaction's output)")
    return raw


class AptosSubmitElement(ElementBase[AptosSubmitConfig]):
    type_name = "aptos_submit"
    placement = Placement.IO
    fixed_outputs = frozenset({"transaction_hash", "success", "vm_status"})

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        raw = _raw_transaction(_hex_input(inputs, "raw_transaction_bcs", invalid))
        key_bytes = _sized(_hex_input(inputs, "public_key", invalid_signature), "public_key", PUBLIC_KEY_BYTES)
        signature = Signature(_sized(_hex_input(inputs, "signature", invalid_signature), "signature", SIGNATURE_BYTES))
        key = PublicKey.from_str(key_bytes.hex())  # any 32 bytes; one that is no curve point fails to verify
        if not raw.verify(key, signature):
            raise invalid_signature(
                "signature",
                "does not verify with 'public_key' over the transaction's signing message "
                "(the wallet signs aptos_transaction's `signing_message` with the sender's key)",
            )
        signed = SignedTransaction(raw, AccountAuthenticator(Ed25519Authenticator(key, signature)))
        aptos = ctx.services.aptos
        tx_hash = await aptos.submit(signed.bytes())
        transaction = await await_transaction(aptos, tx_hash, self.config.wait_seconds)
        return {
            "transaction_hash": tx_hash,
            "success": None if transaction is None else bool(transaction.get("success")),
            "vm_status": None if transaction is None else transaction.get("vm_status"),
        }
