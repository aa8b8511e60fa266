"""Validating large requests off the event loop.

Contract: `await validate_off_loop(body, settings, registry)` returns what `validate_request`
returns.
Bodies up to `INLINE_LIMIT` bytes (every ordinary flow: validation takes well under a
millisecond) are validated inline; larger ones in a small thread pool of their own
(`WORKERS` threads, the rest queue), so a multi-megabyte body never holds the event loop of
the ingress or of a coordinator, and many of them at once cannot occupy every thread of the
loop's default executor.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from engine.registry import ElementRegistry
from engine.settings import Settings
from engine.validation import Validation, validate_request

INLINE_LIMIT = 64 * 1024
WORKERS = 2

_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="validate")


async def validate_off_loop(
    body: bytes | str | dict[str, Any], settings: Settings, registry: ElementRegistry
) -> Validation:
    if isinstance(body, bytes | str) and len(body) > INLINE_LIMIT:
        return await asyncio.get_running_loop().run_in_executor(_pool, validate_request, body, settings, registry)
    return validate_request(body, settings, registry)
