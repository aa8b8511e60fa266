"""Request guards: optional bearer-token auth naming the caller, and FastAPI's 422s in our format.

Contract: when `API_KEY` or `API_KEYS` is set, every path but `/health` and the run
inspector's page and static files (`/ui`, `/ui/...`: no run data; the page asks for the token) needs
`Authorization: Bearer <key>`; otherwise 401 without echoing anything back. The token is
compared in constant time with every configured key (no early exit that would time which key
matched a prefix). The request's caller — `request.state.caller` — is the name `API_KEYS`
gives the key (`API_KEYS=alice:<key>,bob:<key>`), `default` for the shared `API_KEY`, and
the empty string when auth is off. Flows belong to their caller (see `actors.coordinator`).
Parameter errors FastAPI finds (e.g. `after_seq=abc`) answer 422 with the same `problems`
list as `/execute`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from engine.settings import get_settings
from engine.validation import json_path
from web.schemas import problems_body

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})
OPEN_PREFIX = "/ui"  # the run inspector's page and its static files: no data; the page asks for the token


class BearerAuth:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            keys = get_settings().caller_keys()
            caller = _caller(scope, keys) if keys else ""
            if caller is None and not _is_open(_route(scope)):
                await _reject(send)
                return
            scope.setdefault("state", {})["caller"] = caller or ""
        await self.app(scope, receive, send)


def _is_open(route: str) -> bool:
    return route in OPEN_PATHS or route == OPEN_PREFIX or route.startswith(OPEN_PREFIX + "/")


def _route(scope: Scope) -> str:
    """The path within the app (a deployment under a route prefix sees it in `root_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer_token(scope: Scope) -> bytes | None:
    headers: Iterable[tuple[bytes, bytes]] = scope.get("headers", [])  # ASGI: lower-case names, raw values
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def _caller(scope: Scope, keys: dict[str, str]) -> str | None:
    """The name of the key the request's bearer token matches, or None."""
    token = _bearer_token(scope)
    if token is None:
        return None
    found = None
    for caller, key in keys.items():  # every key compared: the time does not tell which matched
        if hmac.compare_digest(token, key.encode()):
            found = caller
    return found


async def _reject(send: Send) -> None:
    body = json.dumps({"detail": "missing or invalid bearer token"}).encode()
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_problems(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Pydantic's errors as problems: a JSON path and a message each."""
    return [
        {
            "path": json_path(*[str(part) if not isinstance(part, int) else part for part in err["loc"]]),
            "message": err["msg"],
        }
        for err in errors
    ]


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(problems_body("the request is invalid", error_problems(exc.errors())), status_code=422)


def install(app: FastAPI) -> None:
    app.add_middleware(BearerAuth)
    app.exception_handler(RequestValidationError)(_validation_error)  # typed for this one exception class
