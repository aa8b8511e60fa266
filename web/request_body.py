"""Reading a request body within a size limit and a time limit, however it is framed.

Contract: `read_body(request, limit, timeout)` returns the whole body as bytes, or raises
- `BodyTooLarge` as soon as the declared `Content-Length` or the bytes received so far
  (chunked bodies included) exceed `limit` — the rest is never read, so memory stays bounded
  by the limit whatever the sender does;
- `BodyTooSlow` when the body has not fully arrived `timeout` seconds after reading began
  (a slow sender cannot hold a request open for ever).
`refusal(exc)` is the matching response: 413 or 408, with no echo of what was sent.
"""

from __future__ import annotations

import asyncio

from fastapi import Request
from fastapi.responses import JSONResponse


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        raise BodyTooLarge(limit)
    received = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                received += chunk
                if len(received) > limit:
                    raise BodyTooLarge(limit)
    except TimeoutError:
        raise BodyTooSlow(timeout) from None
    return bytes(received)


def refusal(exc: BodyTooLarge | BodyTooSlow) -> JSONResponse:
    if isinstance(exc, BodyTooLarge):
        return JSONResponse({"detail": f"body over {exc.args[0]} bytes"}, 413, headers={"connection": "close"})
    return JSONResponse(
        {"detail": f"the body did not arrive within {exc.args[0]:g} s"}, 408, headers={"connection": "close"}
    )
