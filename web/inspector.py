"""The run inspector's pages: `GET /ui` (recent runs) and `GET /ui/flows/{flow_id}` (one run),
and their static files under `GET /ui/static/…`.

Contract: both pages are the same HTML shell (`web/static/inspector.html`); its script
(`inspector.js`) reads the page's path and draws the list or the run from the JSON API
(`/flows`, `/flows/{id}/definition`, `/flows/{id}/stream`) with the caller's bearer token,
which it asks for and keeps in the tab's session when the API answers 401. The pages and files
hold no run data, so they are served without auth (`web.guards`). Everything is in this
package — the dagre layout library is vendored (`static/vendor/`, with its licence) — so the
inspector works without internet. A strict Content-Security-Policy allows scripts, styles and
connections to this origin only; the script shows flow data only as text, never as HTML.
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

STATIC = Path(__file__).resolve().parent / "static"
FILES = {
    "inspector.js": "text/javascript; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
    "vendor/dagre-0.8.5.min.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _page(request: Request) -> HTMLResponse:
    base = html.escape(str(request.scope.get("root_path", "")).rstrip("/"), quote=True)
    text = _read("inspector.html").decode().replace("{{BASE}}", base)
    return HTMLResponse(text, headers=SECURITY_HEADERS)


@router.get("/ui")
async def runs_page(request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/ui/flows/{flow_id}")
async def run_page(flow_id: str, request: Request) -> HTMLResponse:
    return _page(request)


@router.get("/ui/static/{name:path}")
async def static_file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:  # only the listed files: no path ever reaches the file system
        return Response(status_code=404)
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"}
    return Response(_read(name), media_type=media_type, headers=headers)
