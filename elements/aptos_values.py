"""Aptos values checked before any network call: addresses, function ids, type tags, typed
arguments (address, bool, u8…u256, string, vector<…>) encoded with aptos-sdk's BCS.

Every failure is an `ElementError` (`invalid_argument`) that names the field and what is
expected, so a bad address or argument never reaches the node.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aptos_sdk.account_address import AccountAddress
from aptos_sdk.bcs import Serializer
from aptos_sdk.transactions import TransactionArgument
from aptos_sdk.type_tag import (
    AccountAddressTag,
    BoolTag,
    StructTag,
    TypeTag,
    U8Tag,
    U16Tag,
    U32Tag,
    U64Tag,
    U128Tag,
    U256Tag,
)

from engine.errors import ElementError

FUNCTION_ID = re.compile(r"^(0x[0-9a-fA-F]{1,64}|[a-z_][a-z0-9_]*)::[A-Za-z_]\w*::[A-Za-z_]\w*$")
_UINT_BITS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "u128": 128, "u256": 256}
_PRIMITIVE_TAGS = {
    "bool": BoolTag, "u8": U8Tag, "u16": U16Tag, "u32": U32Tag, "u64": U64Tag, "u128": U128Tag,
    "u256": U256Tag, "address": AccountAddressTag,
}  # fmt: skip
Encoder = Callable[[Serializer, Any], None]  # writes one value's BCS


class InvalidArgument(ElementError, ValueError):
    """Also a ValueError, so the same checks report as 422 problems inside config models."""

    error_type = "invalid_argument"


def invalid(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"'{field}': {message}")


def parse_address(value: Any, field: str) -> AccountAddress:
    if not isinstance(value, str):
        raise invalid(field, f"must be an address string like 0x1, got {type(value).__name__}")
    try:
        return AccountAddress.from_str_relaxed(value)
    except Exception:
        raise invalid(field, f"'{value}' is not a valid Aptos address (0x followed by up to 64 hex digits)") from None


def check_function_id(function: str, field: str = "function") -> tuple[str, str]:
    """`0x1::coin::transfer` → (`0x1::coin`, `transfer`)."""
    if not FUNCTION_ID.match(function or ""):
        raise invalid(field, f"'{function}' is not a function id like 0x1::module::function")
    module, _, name = function.rpartition("::")
    return module, name


def parse_type_tag(text: str, field: str) -> TypeTag:
    text = text.strip()
    if text in _PRIMITIVE_TAGS:
        return TypeTag(_PRIMITIVE_TAGS[text](None) if text == "address" else _PRIMITIVE_TAGS[text](0))
    try:
        return TypeTag(StructTag.from_str(text))
    except Exception:
        raise invalid(field, f"'{text}' is not a Move type like 0x1::aptos_coin::AptosCoin") from None


def _uint_encoder(kind: str, field: str) -> Callable[[Any], tuple[Any, Encoder]]:
    bits = _UINT_BITS[kind]

    def encode(value: Any) -> tuple[Any, Encoder]:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise invalid(field, f"{kind} needs an integer, got {type(value).__name__}")
        try:
            number = int(value)
        except ValueError:
            raise invalid(field, f"{kind} needs an integer, got '{value}'") from None
        if not 0 <= number < 2**bits:
            raise invalid(field, f"{number} is out of range for {kind}")
        return number, getattr(Serializer, kind)

    return encode


def _encoder(kind: str, field: str) -> Callable[[Any], tuple[Any, Encoder]]:
    kind = kind.strip()
    if kind in _UINT_BITS:
        return _uint_encoder(kind, field)
    if kind == "bool":
        return lambda v: (
            (v, Serializer.bool) if isinstance(v, bool) else _raise(invalid(field, "bool needs true or false"))
        )
    if kind in ("string", "0x1::string::String"):
        return lambda v: (v, Serializer.str) if isinstance(v, str) else _raise(invalid(field, "string needs text"))
    if kind == "address":
        return lambda v: (parse_address(v, field), Serializer.struct)
    if kind.startswith("vector<") and kind.endswith(">"):
        inner = _encoder(kind[7:-1], field)

        def encode_vector(values: Any) -> tuple[Any, Encoder]:
            if not isinstance(values, list):
                raise invalid(field, f"{kind} needs a list")
            encoded = [inner(v) for v in values]
            item_encoder = encoded[0][1] if encoded else Serializer.u8
            return [v for v, _ in encoded], Serializer.sequence_serializer(item_encoder)

        return encode_vector
    raise invalid(field, f"unsupported argument type '{kind}' (address, bool, u8…u256, string, vector<…>)")


def _raise(error: Exception) -> Any:
    raise error


def typed_argument(kind: str, value: Any, field: str) -> TransactionArgument:
    encoded, serializer = _encoder(kind, field)(value)
    return TransactionArgument(encoded, serializer)


def readable(value: Any) -> Any:
    """JSON form of an encoded argument value (addresses as strings, big ints as strings)."""
    if isinstance(value, AccountAddress):
        return str(value)
    if isinstance(value, list):
        return [readable(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 2**53:
        return str(value)
    return value
