"""The services an element may call, as interfaces: what `ctx.services` offers.

Contract: `Services` has one typed attribute per service — `bedrock` (`LlmService`), `aptos`
(`AptosNode`), `sandbox` (`CodeRunner`). Elements call these interfaces and nothing else: they
never hold an SDK client, and failures reach them already mapped to `engine.errors` types with a
stable `error_type`. The implementations live in `services/` (`services.hub.ServiceHub` builds
them lazily, once per process); the runtime may replace one (the Ray runtime's sandbox is an
actor). This module imports no SDK and no service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from engine.llm import ConverseRequest, StreamEnd, ToolReply, ToolSpec


class LlmService(Protocol):
    """Bedrock's Converse API."""

    async def generate_text(self, request: ConverseRequest, on_text: Callable[[str], None]) -> StreamEnd:
        """Stream the answer, calling `on_text` with each text delta as it arrives."""
        ...

    async def converse_tool(self, request: ConverseRequest, tool: ToolSpec) -> ToolReply:
        """One call with `tool` forced; the tool input the model gave."""
        ...


class CodeRunner(Protocol):
    """The custom-code sandbox: one fresh, isolated, resource-limited process per run."""

    async def run(
        self,
        code: str,
        inputs: dict[str, Any],
        *,
        memory_mb: int,
        cpu_seconds: int,
        timeout: float,
        label: str = "",
    ) -> dict[str, Any]:
        """The outputs of `code` run on `inputs`; `label` (`flow_id/element_id`) names the run."""
        ...


@dataclass(frozen=True)
class AptosAccountInfo:
    """An account as the node reports it."""

    sequence_number: int
    authentication_key: str  # 0x and 64 hex digits


class AptosSigner(Protocol):
    """The service's own account (`APTOS_PRIVATE_KEY`); transactions travel as BCS bytes."""

    def address(self) -> str:
        """The account's address in long form (0x and 64 hex digits)."""
        ...

    def sign(self, raw_transaction: bytes) -> bytes:
        """The BCS `SignedTransaction` of the BCS `RawTransaction` given, signed with the key.

        Raises `ElementError` (`invalid_argument`) when the bytes are not a `RawTransaction`.
        """
        ...

    def sign_for_simulation(self, raw_transaction: bytes) -> bytes:
        """The same with an all-zero signature, as simulation wants (the node refuses a real one)."""
        ...


class AptosNode(Protocol):
    """An Aptos fullnode's REST API (reads, simulation, submission) and the service's signer.

    Addresses are strings (`0x1`, or 0x and 64 hex digits); one that is not an address is
    `ElementError` (`invalid_argument`) before any request. Every request's failure arrives
    mapped, its message naming what was asked: a 404 is `ElementError` (`not_found`); 429, 5xx
    (after any retries the service makes) or an unreachable node is `TransientError`
    (`node_unavailable`), which an element `retry` policy may try again; any other 4xx is
    `ElementError` (`node_rejected`) with the node's reason.
    """

    async def account(self, address: str) -> AptosAccountInfo:
        """The account's sequence number and authentication key; `not_found` when it does not exist."""
        ...

    async def balance(self, address: str, coin_type: str) -> int:
        """The account's balance of `coin_type` (a Move struct type such as
        `0x1::aptos_coin::AptosCoin`), in the coin's smallest unit; `not_found` on a 404."""
        ...

    async def resource(self, address: str, resource_type: str) -> dict[str, Any]:
        """The resource's JSON (`type`, `data`); `not_found` when the account or the resource is missing."""
        ...

    async def resources(self, address: str) -> list[dict[str, Any]]:
        """Every resource of the account as JSON; `not_found` when the account does not exist."""
        ...

    async def transaction(self, transaction_hash: str) -> dict[str, Any]:
        """The transaction's JSON (`type` is `pending_transaction` until committed; then `success`,
        `vm_status`, …); `not_found` while the node does not know the hash."""
        ...

    async def view(self, function: str, type_arguments: list[str], arguments: list[Any]) -> object:
        """The decoded JSON answer of the view function (a list, one value per return value);
        arguments in the node's JSON form (strings, numbers); `node_rejected` when the function
        does not exist or aborts."""
        ...

    async def sequence_number(self, address: str) -> int:
        """The account's next sequence number; 0 for an account the node does not know yet."""
        ...

    async def chain_id(self) -> int:
        """The node's chain id (asked once, then remembered)."""
        ...

    async def simulate(self, signed_transaction: bytes) -> list[dict[str, Any]]:
        """The node's simulation of a BCS `SignedTransaction` (zero signature): one JSON result
        (`success`, `vm_status`, `gas_used`, …) per transaction, empty when it gave none.
        Sent once, never retried; bytes that are not a `SignedTransaction`: `invalid_argument`."""
        ...

    async def submit(self, signed_transaction: bytes) -> str:
        """The hash (0x…) of the BCS `SignedTransaction`, submitted. Sent once, never retried (a
        retry after a lost answer could submit twice): an unreachable node or a 5xx is
        `node_unavailable` though it may have been accepted; a refused one is `node_rejected`."""
        ...

    def signer(self) -> AptosSigner:
        """The service's account, loaded from `APTOS_PRIVATE_KEY` on first use. No request; a
        missing key is `ConfigurationError` (`missing_credentials`), a malformed one
        (`invalid_credentials`), and neither message contains the key."""
        ...


class Services(Protocol):
    @property
    def bedrock(self) -> LlmService: ...

    @property
    def aptos(self) -> AptosNode: ...

    @property
    def sandbox(self) -> CodeRunner: ...
