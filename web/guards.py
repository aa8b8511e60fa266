"""Request guards: optional bearer-token auth, and FastAPI's own 422s in our problem format.

Contract: when `API_KEY` is set, every path but `/health` needs `Authorization: Bearer <key>`
(compared in constant time); otherwise 401 without echoing anything back. Parameter errors
FastAPI finds (e.g. `after_seq=abc`) answer 422 with the same `problems` list as `/execute`.
"""

from __future__ import annotations

import hmac
import json

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from engine.settings import get_settings
from engine.validation import json_path
from web.schemas import problems_body

OPEN_PATHS = frozenset({"/health"})


class BearerAuth:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            expected = get_settings().api_key
            if expected is not None and not _authorized(scope, expected.get_secret_value()):
                await _reject(send)
                return
        await self.app(scope, receive, send)


def _authorized(scope, expected: str) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())
    return False


async def _reject(send) -> None:
    body = json.dumps({"detail": "missing or invalid bearer token"}).encode()
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = [
        {
            "path": json_path(*[str(part) if not isinstance(part, int) else part for part in err["loc"]]),
            "message": err["msg"],
        }
        for err in exc.errors()
    ]
    return JSONResponse(problems_body("the request is invalid", problems), status_code=422)


def install(app: FastAPI) -> None:
    app.add_middleware(BearerAuth)
    app.add_exception_handler(RequestValidationError, _validation_error)
