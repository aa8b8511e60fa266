"""`aptos_read`: read from Aptos — `account`, `balance`, `resource`, `resources`, `view`,
`transaction`.

The address comes from the input named by `address_input` (default `address`) or the config
`address`; view arguments from `arguments` (strings/numbers as the node's JSON view API takes
them) or the input named by `arguments_input`. Addresses, function ids and type tags are
checked before any network call. Outputs per operation are listed in the README.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from elements.aptos_values import check_function_id, invalid, parse_address, parse_type_tag
from engine.element import ElementBase, ElementContext, Placement

APT = "0x1::aptos_coin::AptosCoin"


class AptosReadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation: Literal["account", "balance", "resource", "resources", "view", "transaction"]
    address: str | None = None
    address_input: str = "address"
    coin_type: str = APT
    resource_type: str | None = None
    function: str | None = None
    type_arguments: list[str] = Field(default_factory=list)
    arguments: list[Any] = Field(default_factory=list)
    arguments_input: str | None = None
    transaction_hash: str | None = None
    hash_input: str = "transaction_hash"

    @model_validator(mode="after")
    def _needs(self) -> AptosReadConfig:
        if self.operation == "resource" and not self.resource_type:
            raise ValueError("operation 'resource' needs 'resource_type' (e.g. 0x1::account::Account)")
        if self.operation == "view":
            if not self.function:
                raise ValueError("operation 'view' needs 'function' (e.g. 0x1::coin::balance)")
            check_function_id(self.function)
        for index, tag in enumerate(self.type_arguments):
            parse_type_tag(tag, f"type_arguments[{index}]")
        return self


class AptosReadElement(ElementBase[AptosReadConfig]):
    type_name = "aptos_read"
    placement = Placement.IO

    def _address(self, inputs: dict[str, Any]) -> str:
        value = inputs.get(self.config.address_input, self.config.address)
        if value is None:
            raise invalid("address", f"give it in config or as input '{self.config.address_input}'")
        return str(parse_address(value, "address"))

    async def execute(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        op = self.config.operation
        if op == "view":
            return await self._view(inputs, ctx)
        if op == "transaction":
            return await self._transaction(inputs, ctx)
        address = self._address(inputs)
        aptos = ctx.services.aptos
        if op == "account":
            info = await aptos.account(address)
            return {
                "address": address,
                "sequence_number": info.sequence_number,
                "authentication_key": info.authentication_key,
            }
        if op == "balance":
            coin = self.config.coin_type
            parse_type_tag(coin, "coin_type")
            balance = await aptos.balance(address, coin)
            return {"address": address, "balance": balance, "coin_type": coin}
        if op == "resource":
            if self.config.resource_type is None:  # the config model refuses this; said for the type checker
                raise invalid("resource_type", "operation 'resource' needs it")
            resource = await aptos.resource(address, self.config.resource_type)
            return {"address": address, "resource": resource, "data": resource.get("data", {})}
        resources = await aptos.resources(address)
        return {"address": address, "resources": resources, "count": len(resources)}

    async def _view(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        arguments = inputs.get(self.config.arguments_input) if self.config.arguments_input else None
        arguments = self.config.arguments if arguments is None else arguments
        if not isinstance(arguments, list):
            raise invalid("arguments", "must be a list")
        if self.config.function is None:  # the config model refuses this; said for the type checker
            raise invalid("function", "operation 'view' needs it")
        result = await ctx.services.aptos.view(self.config.function, self.config.type_arguments, arguments)
        return {"result": result, "value": result[0] if isinstance(result, list) and len(result) == 1 else result}

    async def _transaction(self, inputs: dict[str, Any], ctx: ElementContext) -> dict[str, Any]:
        tx_hash = inputs.get(self.config.hash_input, self.config.transaction_hash)
        if not isinstance(tx_hash, str) or not tx_hash.startswith("0x"):
            raise invalid("transaction_hash", f"needs a 0x… hash in config or input '{self.config.hash_input}'")
        transaction = await ctx.services.aptos.transaction(tx_hash)
        return {
            "transaction": transaction,
            "success": transaction.get("success"),
            "vm_status": transaction.get("vm_status"),
        }
