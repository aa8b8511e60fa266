"""The run inspector's pages and static files (`web.inspector`), on a bare FastAPI app: only
the listed files are served, the page points at its own route prefix, a strict CSP goes with
everything, and the script never writes flow data as HTML. No Ray."""

from pathlib import Path

import httpx
from fastapi import FastAPI

from web import inspector


def client(root_path=""):
    app = FastAPI()
    app.include_router(inspector.router)
    transport = httpx.ASGITransport(app=app, root_path=root_path)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_both_pages_are_the_shell_with_the_route_prefix_and_a_strict_csp():
    for path in ("/ui", "/ui/flows/some-flow"):
        async with client("/keyed") as web:
            response = await web.get(path)
        assert response.status_code == 200
        assert '<meta name="flow-executor-base" content="/keyed">' in response.text
        assert 'src="/keyed/ui/static/inspector.js"' in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "default-src 'none'" in response.headers["content-security-policy"]


async def test_only_the_listed_static_files_are_served():
    async with client() as web:
        assert (await web.get("/ui/static/inspector.js")).headers["content-type"].startswith("text/javascript")
        assert (await web.get("/ui/static/vendor/dagre-0.8.5.min.js")).status_code == 200
        for name in ("inspector.html", "../inspector.py", "..%2Finspector.py", "vendor/dagre-0.8.5.LICENSE", "x.js"):
            assert (await web.get(f"/ui/static/{name}")).status_code == 404, name


def test_the_script_writes_flow_data_as_text_only():
    script = (Path(inspector.STATIC) / "inspector.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script
