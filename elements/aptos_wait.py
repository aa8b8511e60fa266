"""Waiting for a submitted Aptos transaction: the one loop `aptos_transaction` and
`aptos_submit` share.

`await_transaction(aptos, hash, wait_seconds)` asks the node for the hash every 0.2 s until it
is no longer pending, for up to `wait_seconds` (0: not at all). While the node does not know the
hash yet (`not_found`) it keeps asking; any other node error is raised as it came. What to do
with a transaction still pending at the deadline is the caller's choice.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from engine.errors import ElementError
from engine.ports import AptosNode

POLL_SECONDS = 0.2


async def await_transaction(aptos: AptosNode, transaction_hash: str, wait_seconds: float) -> dict[str, Any] | None:
    """The committed transaction's JSON (`success`, `vm_status`, …); None when not waited for
    (`wait_seconds` 0) or still pending or unknown after `wait_seconds`."""
    if wait_seconds <= 0:
        return None
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            transaction = await aptos.transaction(transaction_hash)
            if transaction.get("type") != "pending_transaction":
                return transaction
        except ElementError as error:
            if error.error_type != "not_found":
                raise
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(POLL_SECONDS)
