"""`python -m client.cli run examples/branching_case.json` — see a flow run, event by event.

Contract: starts a local Backend 2 (a websockets server on 127.0.0.1), points the flow's
`backend2_ws_url` at it, gives the flow a fresh id, posts it to the service (`--service`,
default http://127.0.0.1:8000; `--api-key` or env `API_KEY` for bearer auth), prints every
event as it arrives and exits when `flow_completed` comes (exit 0 if the flow completed,
1 otherwise, 2 if the service refused the flow).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import httpx
from websockets.asyncio.server import serve


def _prepare(path: Path, port: int) -> dict:
    body = json.loads(path.read_text())
    flow_id = f"{body.get('flow_id', 'flow')}-{uuid.uuid4().hex[:8]}"
    body["flow_id"] = flow_id
    body["flow_definition"]["flow_id"] = flow_id
    body["backend2_ws_url"] = f"ws://127.0.0.1:{port}/ws/{flow_id}"
    return body


def _print_event(event: dict) -> None:
    element = f" {event['element_id']}" if event.get("element_id") else ""
    for level in reversed(event.get("scope") or []):  # inside sub-flows: each[3]/summarise
        element = f" {level['element_id']}[{level['index']}]/{element.strip()}"
    if event["type"] == "llm_chunk":
        print(event["data"]["chunk"], end="", flush=True)
        return
    print(f"\n#{event['seq']:<4} {event['type']}{element}: {json.dumps(event['data'], ensure_ascii=False)[:300]}")


async def run(path: Path, service: str, api_key: str | None, port: int, timeout: float) -> int:
    done: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    async def backend2(connection) -> None:
        async for message in connection:
            event = json.loads(message)
            _print_event(event)
            if event["type"] == "flow_completed" and not done.done():
                done.set_result(event)

    async with serve(backend2, "127.0.0.1", port) as server:
        bound = server.sockets[0].getsockname()[1]
        body = _prepare(path, bound)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with httpx.AsyncClient(base_url=service, timeout=30) as http:
            response = await http.post("/execute", json=body, headers=headers)
        print(f"POST /execute → {response.status_code} {response.text}")
        if response.status_code != 200:
            return 2
        final = await asyncio.wait_for(done, timeout)
    return 0 if final["data"]["status"] == "completed" else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_cmd = sub.add_parser("run", help="post a flow file and print its live events")
    run_cmd.add_argument("flow", type=Path)
    run_cmd.add_argument("--service", default="http://127.0.0.1:8000")
    run_cmd.add_argument("--api-key", default=os.environ.get("API_KEY"))
    run_cmd.add_argument("--port", type=int, default=0, help="port of the local Backend 2 (0: any free port)")
    run_cmd.add_argument("--timeout", type=float, default=330)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.flow, args.service, args.api_key, args.port, args.timeout))


if __name__ == "__main__":
    sys.exit(main())
