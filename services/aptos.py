"""Aptos through aptos-sdk: the implementation of `engine.ports.AptosNode`, one async RestClient
per process, typed errors, a lazily loaded signing key.

Contract:
- `AptosService(settings)` talks to `APTOS_NODE_URL` (`/v1` added when missing, as aptos-sdk's
  `RestClient` expects) with a 10 s request timeout (3 s to connect). aptos-sdk retries GETs and
  JSON view calls on transport errors, 429 and 5xx (2 retries, backoff); the BCS view behind
  `balance`, simulation and submission are sent once.
- Each node method is one SDK call made through the private `_call`, which maps failures:
  404 → `not_found`; 429, 5xx and an unreachable node → `TransientError` (`node_unavailable`),
  so an element `retry` policy may try again; other 4xx → `node_rejected`. Messages name what
  was asked, never a key. The SDK client is private: no caller reaches the node unmapped.
- Addresses arrive as strings and transactions as BCS bytes (the interface names no SDK type);
  one that does not parse is `invalid_argument`, before any request.
- `signer()` loads `APTOS_PRIVATE_KEY` only when signing is needed, once; a missing or malformed
  key is a `ConfigurationError` whose message never contains the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aptos_sdk.account import Account
from aptos_sdk.account_address import AccountAddress
from aptos_sdk.async_client import AccountNotFound, ApiError, ClientConfig, ResourceNotFound, RestClient
from aptos_sdk.bcs import Deserializer
from aptos_sdk.transactions import RawTransaction, SignedTransaction

from engine.errors import ConfigurationError, ElementError, TransientError
from engine.ports import AptosAccountInfo
from engine.settings import Settings

log = logging.getLogger(__name__)


def node_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class AptosService:
    """`engine.ports.AptosNode` over aptos-sdk's async `RestClient`."""

    def __init__(self, settings: Settings, http_retries: int = 2):
        self.settings = settings
        self.base_url = node_base_url(settings.aptos_node_url)
        self._client = RestClient(self.base_url, ClientConfig(http_retries=http_retries, http2=False))
        self._client.client.timeout = httpx.Timeout(10.0, connect=3.0)
        self._signer: AccountSigner | None = None

    async def account(self, address: str) -> AptosAccountInfo:
        what = f"account {address}"
        info = await self._call(what, self._client.account(_address(what, address)))
        return AptosAccountInfo(int(info["sequence_number"]), info["authentication_key"])

    async def balance(self, address: str, coin_type: str) -> int:
        what = f"balance of {address}"
        return int(await self._call(what, self._client.account_balance(_address(what, address), coin_type=coin_type)))

    async def resource(self, address: str, resource_type: str) -> dict[str, Any]:
        what = f"resource {resource_type} of {address}"
        return await self._call(what, self._client.account_resource(_address(what, address), resource_type))

    async def resources(self, address: str) -> list[dict[str, Any]]:
        what = f"resources of {address}"
        return await self._call(what, self._client.account_resources(_address(what, address)))

    async def transaction(self, transaction_hash: str) -> dict[str, Any]:
        return await self._call(f"transaction {transaction_hash}", self._client.transaction_by_hash(transaction_hash))

    async def view(self, function: str, type_arguments: list[str], arguments: list[Any]) -> object:
        raw = await self._call(f"view {function}", self._client.view(function, type_arguments, arguments))
        return json.loads(raw)

    async def sequence_number(self, address: str) -> int:
        what = f"sequence number of {address}"
        return await self._call(what, self._client.account_sequence_number(_address(what, address)))

    async def chain_id(self) -> int:
        return await self._call("chain id", self._client.chain_id())

    async def simulate(self, signed_transaction: bytes) -> list[dict[str, Any]]:
        signed = _decode("simulation", SignedTransaction.deserialize, signed_transaction)
        # aptos-sdk types the answer as one object; the node sends a list of them
        results: object = await self._call("simulation", self._client.simulate_bcs_transaction(signed))
        return results if isinstance(results, list) else []

    async def submit(self, signed_transaction: bytes) -> str:
        signed = _decode("submission", SignedTransaction.deserialize, signed_transaction)
        return await self._call("submission", self._client.submit_bcs_transaction(signed))

    def signer(self) -> AccountSigner:
        if self._signer is None:
            self._signer = AccountSigner(_load_account(self.settings))
        return self._signer

    async def aclose(self) -> None:
        await self._client.close()

    async def _call[T](self, what: str, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (ResourceNotFound, AccountNotFound):
            raise ElementError(f"{what}: not found on the node", error_type="not_found") from None
        except ApiError as error:
            status = getattr(error, "status_code", 0)
            if status == 404:
                raise ElementError(f"{what}: not found on the node", error_type="not_found") from None
            if status == 429 or status >= 500:
                raise TransientError(
                    f"{what}: the node answered {status} after retries", error_type="node_unavailable"
                ) from None
            detail = _short(str(error))
            raise ElementError(
                f"{what}: the node refused it ({status}): {detail}", error_type="node_rejected"
            ) from None
        except httpx.HTTPError as error:
            raise TransientError(
                f"{what}: the Aptos node at {self.base_url} is unreachable ({type(error).__name__})",
                error_type="node_unavailable",
            ) from None


class AccountSigner:
    """`engine.ports.AptosSigner` for an aptos-sdk `Account`."""

    def __init__(self, account: Account):
        self._account = account

    def address(self) -> str:
        return str(self._account.address())

    def sign(self, raw_transaction: bytes) -> bytes:
        raw = _decode("signing", RawTransaction.deserialize, raw_transaction)
        return SignedTransaction(raw, self._account.sign_transaction(raw)).bytes()

    def sign_for_simulation(self, raw_transaction: bytes) -> bytes:
        raw = _decode("signing", RawTransaction.deserialize, raw_transaction)
        return SignedTransaction(raw, self._account.sign_simulated_transaction(raw)).bytes()


def _load_account(settings: Settings) -> Account:
    secret = settings.aptos_private_key
    if secret is None:
        raise ConfigurationError("signing needs APTOS_PRIVATE_KEY, which is not set", error_type="missing_credentials")
    key = secret.get_secret_value().strip()
    key = key.removeprefix("ed25519-priv-")
    try:
        return Account.load_key(key)
    except Exception:
        raise ConfigurationError(
            "APTOS_PRIVATE_KEY is not a valid Ed25519 private key (hex)", error_type="invalid_credentials"
        ) from None


def _address(what: str, address: str) -> AccountAddress:
    try:
        return AccountAddress.from_str_relaxed(address)
    except Exception:
        raise ElementError(f"{what}: '{address}' is not an Aptos address", error_type="invalid_argument") from None


def _decode[T](what: str, read: Callable[[Deserializer], T], data: bytes) -> T:
    """The value BCS `data` holds, all of it; else `invalid_argument`."""
    problem = ElementError(f"{what}: the transaction is not valid BCS", error_type="invalid_argument")
    deserializer = Deserializer(data)
    try:
        value = read(deserializer)
    except Exception:
        raise problem from None
    if deserializer.remaining():
        raise problem
    return value


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
