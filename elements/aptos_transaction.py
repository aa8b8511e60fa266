"""`aptos_transaction`: build an entry-function transaction offline with aptos-sdk, for a
wallet to sign; optionally simulate it; sign and submit only when both switches are on.

Outputs: `payload` (function, type_arguments, arguments — readable), `raw_transaction_bcs`
(hex of the BCS RawTransaction), `signing_message` (hex of what the sender signs:
the RawTransaction prehash + BCS), `sender`, `sequence_number`, `chain_id`. With
`simulate: true`: `simulation` (`success`, `vm_status`, `gas_used`). With `submit: true`
and `APTOS_ALLOW_SUBMIT=true`: signed with `APTOS_PRIVATE_KEY` (the sender is that account),
submitted, awaited up to `wait_seconds`: `transaction_hash`, `status`, `success`.
"""

from __future__ import annotations

import time
from typing import Any

from aptos_sdk.authenticator import AccountAuthenticator, Ed25519Authenticator
from aptos_sdk.ed25519 import PublicKey, Signature
from aptos_sdk.transactions import EntryFunction, RawTransaction, SignedTransaction, TransactionPayload
from pydantic import BaseModel, ConfigDict, Field, field_validator

from elements.aptos_values import (
    check_function_id,
    invalid,
    parse_address,
    parse_type_tag,
    readable,
    typed_argument,
)
from elements.aptos_wait import await_transaction
from engine.element import ElementBase, ElementContext, Placement
from engine.errors import ElementError, TransientError
from engine.ports import AptosNode, AptosSigner


class TypedArgument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    value: Any = None
    input: str | None = None  # take the value from this input instead


class AptosTransactionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: str
    type_arguments: list[str] = Field(default_factory=list)
    arguments: list[TypedArgument] = Field(default_factory=list)
    sender: str | None = None
    sender_input: str = "sender"
    sequence_number: int | None = Field(default=None, ge=0)
    chain_id: int | None = Field(default=None, ge=0, le=255)
    max_gas_amount: int = Field(default=200_000, ge=1)
    gas_unit_price: int = Field(default=100, ge=1)
    expiration_seconds: int = Field(default=600, ge=1)
    simulate: bool = False
    public_key: str | None = None  # the sender's Ed25519 public key, for simulation without a key
    submit: bool = False
    wait_seconds: float = Field(default=30, gt=0, le=600)

    @field_validator("function")
    @classmethod
    def _function(cls, value: str) -> str:
        check_function_id(value)
        return value

    @field_validator("type_arguments")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for index, tag in enumerate(tags):
            parse_type_tag(tag, f"type_arguments[{index}]")
        return tags


class AptosTransactionElement(ElementBase[AptosTransactionConfig]):
    type_name = "aptos_transaction"
    placement = Placement.IO

    def _arguments(self, inputs: dict[str, Any]) -> tuple[list[Any], list[Any]]:
        encoded, shown = [], []
        for index, arg in enumerate(self.config.arguments):
            value = inputs.get(arg.input) if arg.input else arg.value
            if arg.input and arg.input not in inputs:
                raise invalid(f"arguments[{index}]", f"input '{arg.input}' did not arrive")
            argument = typed_argument(arg.type, value, f"arguments[{index}]")
            encoded.append(argument)
            shown.append({"type": arg.type, "value": readable(argument.value)})
        return encoded, shown

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        config = self.config
        module, function = check_function_id(config.function)
        arguments, shown = self._arguments(inputs)
        tags = [parse_type_tag(t, f"type_arguments[{i}]") for i, t in enumerate(config.type_arguments)]
        aptos = ctx.services.aptos
        if config.submit and not ctx.settings.aptos_allow_submit:
            raise ElementError(
                "submission is off on this server: set APTOS_ALLOW_SUBMIT=true (and keep submit: true)",
                error_type="submit_disabled",
            )
        signer = aptos.signer() if config.submit else None
        sender_value = signer.address() if signer else inputs.get(config.sender_input, config.sender)
        if sender_value is None:
            raise invalid("sender", f"give it in config or as input '{config.sender_input}'")
        sender = parse_address(sender_value, "sender")
        sequence = config.sequence_number
        if sequence is None:
            sequence = await aptos.sequence_number(str(sender))
        chain_id = config.chain_id if config.chain_id is not None else await aptos.chain_id()
        payload = TransactionPayload(EntryFunction.natural(module, function, tags, arguments))
        raw = RawTransaction(
            sender, sequence, payload, config.max_gas_amount, config.gas_unit_price,
            int(time.time()) + config.expiration_seconds, chain_id,
        )  # fmt: skip
        raw_bcs = raw.to_bytes()
        outputs: dict[str, Any] = {
            "payload": {"function": config.function, "type_arguments": config.type_arguments, "arguments": shown},
            "raw_transaction_bcs": "0x" + raw_bcs.hex(),
            "signing_message": "0x" + raw.keyed().hex(),
            "sender": str(sender),
            "sequence_number": sequence,
            "chain_id": chain_id,
        }
        if config.simulate:
            outputs["simulation"] = await self._simulate(raw, signer, aptos)
        if signer is not None:
            outputs.update(await self._submit(signer.sign(raw_bcs), aptos))
        return outputs

    async def _simulate(self, raw: RawTransaction, signer: AptosSigner | None, aptos: AptosNode) -> dict[str, Any]:
        if signer is not None:
            signed = signer.sign_for_simulation(raw.to_bytes())
        elif self.config.public_key:
            try:
                key = PublicKey.from_str(self.config.public_key)
            except Exception:
                raise invalid("public_key", "is not an Ed25519 public key (hex)") from None
            authenticator = AccountAuthenticator(Ed25519Authenticator(key, Signature(b"\x00" * 64)))
            signed = SignedTransaction(raw, authenticator).bytes()
        else:
            raise invalid("public_key", "simulation needs the sender's public key (or submit with a key)")
        result = await aptos.simulate(signed)
        first = result[0] if result else {}
        return {
            "success": bool(first.get("success")),
            "vm_status": first.get("vm_status"),
            "gas_used": int(first.get("gas_used", 0)),
        }

    async def _submit(self, signed: bytes, aptos: AptosNode) -> dict[str, Any]:
        tx_hash = await aptos.submit(signed)
        transaction = await await_transaction(aptos, tx_hash, self.config.wait_seconds)
        if transaction is None:
            raise TransientError(
                f"transaction {tx_hash} still pending after {self.config.wait_seconds:g} s", error_type="pending"
            )
        return {
            "transaction_hash": tx_hash,
            "status": transaction.get("vm_status"),
            "success": bool(transaction.get("success")),
        }
