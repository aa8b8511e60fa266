"""SandboxClient: runs user code through a fork server of its own, from asyncio.

Contract: the first `run` starts the fork server subprocess (`python -m
services.sandbox.forkserver`) with a minimal environment — no AWS keys, no Aptos key, no
API_KEY, nothing inherited but PATH, LANG and the project on PYTHONPATH. `run(code, inputs,
...)` sends one run and awaits its answer (JSON in, JSON out); many runs may be in flight.
Errors come back as `ElementError` with `error_type` code_error, forbidden, memory_limit,
cpu_limit, recursion_limit, output_too_large, timeout or crashed. If the awaiting coroutine is
cancelled, the child is killed at once. If the fork server dies, waiting runs fail with
`sandbox_unavailable` and the next run starts a new one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from engine.errors import ElementError
from services.sandbox import protocol

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


def sandbox_environment() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": PROJECT_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
    }


class SandboxClient:
    def __init__(self, python: str | None = None):
        self.python = python or sys.executable
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None
        self._waiting: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self.server_pid: int | None = None

    async def _ensure_server(self) -> asyncio.subprocess.Process:
        async with self._lock:
            if self._process is not None and self._process.returncode is None:
                return self._process
            process = await asyncio.create_subprocess_exec(
                self.python,
                "-m",
                "services.sandbox.forkserver",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=sandbox_environment(),
                cwd=PROJECT_ROOT,
                start_new_session=True,
            )
            try:
                ready = await self._read_frame(process)
            except BaseException:  # cancelled or failed while starting: leave no process behind
                process.kill()
                raise
            self.server_pid = ready.get("pid")
            self._process = process
            self._reader = asyncio.get_running_loop().create_task(self._read_answers(process))
            return process

    @staticmethod
    async def _read_frame(process: asyncio.subprocess.Process) -> dict[str, Any]:
        header = await process.stdout.readexactly(protocol.HEADER.size)
        (size,) = protocol.HEADER.unpack(header)
        body = await process.stdout.readexactly(size)
        return json.loads(body)

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        try:
            while True:
                answer = await self._read_frame(process)
                future = self._waiting.pop(answer.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(
                        ElementError("the sandbox process stopped unexpectedly", error_type="sandbox_unavailable")
                    )
            self._waiting.clear()

    def _send(self, process: asyncio.subprocess.Process, message: dict[str, Any]) -> None:
        process.stdin.write(protocol.encode(message))

    async def run(
        self,
        code: str,
        inputs: dict[str, Any],
        *,
        memory_mb: int,
        cpu_seconds: int,
        timeout: float,
        output_limit: int = 1_000_000,
        print_limit: int = 100_000,
        label: str = "",
    ) -> dict[str, Any]:
        """Run `code` in a fresh child; returns `{"outputs": {...}, "printed": "..."}`."""
        process = await self._ensure_server()
        run_id = f"run-{next(self._ids)}"
        future = asyncio.get_running_loop().create_future()
        self._waiting[run_id] = future
        request = {
            "op": "run",
            "id": run_id,
            "code": code,
            "inputs": inputs,
            "memory_mb": memory_mb,
            "cpu_seconds": cpu_seconds,
            "timeout": timeout,
            "output_limit": output_limit,
            "print_limit": print_limit,
        }
        self._send(process, request)
        try:
            answer = await future
        except asyncio.CancelledError:
            self._waiting.pop(run_id, None)
            if process.returncode is None:
                self._send(process, {"op": "kill", "id": run_id})
            raise
        if not answer.get("ok"):
            raise ElementError(
                answer.get("message", "the code failed"), error_type=answer.get("error_type", "code_error")
            )
        return {"outputs": answer["outputs"], "printed": answer.get("printed", ""), "pid": answer.get("pid")}

    async def start(self) -> None:
        """Start the fork server now rather than on the first run."""
        await self._ensure_server()

    def terminate(self) -> None:
        """Kill the fork server and every child at once (its own process group), from any thread."""
        if self.server_pid is not None:
            try:
                os.killpg(self.server_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def aclose(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                process.kill()
        if self._reader is not None:
            self._reader.cancel()
