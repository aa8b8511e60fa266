"""Aptos through aptos-sdk: one async RestClient per process, typed errors, lazy signing key.

Contract:
- `AptosService(settings)` talks to `APTOS_NODE_URL` (`/v1` added when missing, as aptos-sdk's
  `RestClient` expects) with a 10 s request timeout (3 s to connect) and aptos-sdk's own
  retries of GETs and view calls on transport errors, 429 and 5xx (2 retries, backoff).
- Every call goes through `call()`, which maps failures: 404 → `not_found`; 429, 5xx and an
  unreachable node → `TransientError` (`node_unavailable`), so an element `retry` policy may
  try again; other 4xx → `node_rejected`. Messages name what was asked, never a key.
- `account()` loads `APTOS_PRIVATE_KEY` only when signing is needed; a missing or malformed
  key is a `ConfigurationError` whose message never contains the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx
from aptos_sdk.account import Account
from aptos_sdk.async_client import AccountNotFound, ApiError, ClientConfig, ResourceNotFound, RestClient

from engine.errors import ConfigurationError, ElementError, TransientError
from engine.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def node_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class AptosService:
    def __init__(self, settings: Settings, http_retries: int = 2):
        self.settings = settings
        self.base_url = node_base_url(settings.aptos_node_url)
        self.client = RestClient(self.base_url, ClientConfig(http_retries=http_retries, http2=False))
        self.client.client.timeout = httpx.Timeout(10.0, connect=3.0)
        self._account: Account | None = None

    async def call(self, what: str, awaitable: Awaitable[T]) -> T:
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

    async def view(self, function: str, type_arguments: list[str], arguments: list[Any]) -> Any:
        raw = await self.call(f"view {function}", self.client.view(function, type_arguments, arguments))
        return json.loads(raw)

    def account(self) -> Account:
        if self._account is None:
            secret = self.settings.aptos_private_key
            if secret is None:
                raise ConfigurationError(
                    "signing needs APTOS_PRIVATE_KEY, which is not set", error_type="missing_credentials"
                )
            key = secret.get_secret_value().strip()
            key = key.removeprefix("ed25519-priv-")
            try:
                self._account = Account.load_key(key)
            except Exception:
                raise ConfigurationError(
                    "APTOS_PRIVATE_KEY is not a valid Ed25519 private key (hex)", error_type="invalid_credentials"
                ) from None
        return self._account

    async def aclose(self) -> None:
        await self.client.close()


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
