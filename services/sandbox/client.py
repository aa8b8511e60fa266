"""SandboxClient: runs user code through a fork server of its own, from asyncio.

Contract:
- The first `run` (or `start()`) starts the fork server (`python -m services.sandbox.forkserver`)
  in a session of its own, with a minimal environment: PATH, LANG and the project on
  PYTHONPATH — nothing inherited, so no AWS keys, Aptos key or API_KEY.
- `run(code, inputs, *, memory_mb, cpu_seconds, timeout)` runs the code in a fresh child and
  returns `{"outputs": {...}, "printed": "...", "pid": int}`; inputs and outputs cross as JSON.
  Many runs may be in flight at once: up to `max_concurrent_runs`, and up to
  `max_runs_per_flow` of one flow (the flow id is the part of `label` before `/`); the rest
  queue, flows served in turn (`slots.FairSlots`). Time spent queued counts against the run's
  `timeout`: a run whose time is up before a slot frees never starts (`timeout`), and a
  cancelled waiter leaves the queue at once.
- Before anything is queued or sent, the request is checked: `inputs` nested more than
  `engine.limits.MAX_VALUE_DEPTH` (100) containers deep, or not JSON data, fail with
  `input_invalid`; a request (inputs, code, envelope) whose frame would be over
  `protocol.MAX_FRAME` (64 MB) of compact UTF-8 JSON fails with `input_too_large`, naming both
  sizes. The request goes to the server as exactly the bytes that were measured
  (`ensure_ascii=False`, so non-ASCII text is not inflated up to 6x by escaping). Outputs
  nested more than `MAX_VALUE_DEPTH` deep fail with `output_invalid`; an answer too deep even
  to decode fails that run alone (`output_invalid`), never the other runs.
- Failures raise `SandboxError` (an `ElementError`) with `error_type` input_invalid,
  input_too_large, output_invalid, code_error, forbidden, memory_limit, cpu_limit,
  recursion_limit, output_too_large, crashed, sandbox_unavailable (transient), or
  `ElementTimeout` (`timeout`). No failure leaves a pending entry behind.
- If the awaiting coroutine is cancelled, the child is killed at once (SIGKILL by the server).
- If the fork server dies, the runs waiting on it fail with `sandbox_unavailable` and the next
  `run` starts a new one; a client used from a new event loop starts a new one too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import ElementError, ElementTimeout
from engine.limits import MAX_VALUE_DEPTH, depth_exceeds, describe_size, measure
from services.sandbox import protocol
from services.sandbox.slots import FairSlots

if TYPE_CHECKING:
    from services.sandbox.protocol import Answer

PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
OUTPUT_LIMIT = 1_000_000  # bytes of JSON
PRINT_LIMIT = 100_000  # characters
_GRACE = 5.0  # seconds the client waits beyond the server's own timeout before giving up on it
_ANSWER_ID = re.compile(rb'\{\s*"id"\s*:\s*("run-[0-9]+")')  # how the server's compact frames begin


class SandboxError(ElementError):
    error_type = "code_error"


def sandbox_environment() -> dict[str, str]:
    """The whole environment of the fork server and its children."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONPATH": PROJECT_ROOT,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "SANDBOX_FORK_SERVER": "1",
        "CUSTOM_CODE_ISOLATION": os.environ.get("CUSTOM_CODE_ISOLATION", "auto"),  # the operator's choice
    }


def encode_request(message: dict[str, Any]) -> bytes:
    """One frame as it is sent: compact UTF-8 JSON (escaped ASCII only for lone surrogates)."""
    try:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:  # a lone surrogate cannot be UTF-8: let json escape it instead
        body = json.dumps(message, separators=(",", ":")).encode()
    return protocol.HEADER.pack(len(body)) + body


def check_inputs(inputs: dict[str, Any]) -> None:
    """Refuse inputs too deep for the sandbox, not JSON data, or over the frame limit alone."""
    try:
        shape = measure(inputs, max_depth=MAX_VALUE_DEPTH)
    except (TypeError, ValueError) as exc:
        raise SandboxError(f"the inputs of custom code must be JSON data: {exc}", error_type="input_invalid") from None
    if shape.size is None:
        raise SandboxError(
            f"the inputs are nested more than {MAX_VALUE_DEPTH} levels deep; flatten them first",
            error_type="input_invalid",
        )
    _check_frame(shape.size, "the inputs are")


def _check_frame(size: int, what: str) -> None:
    if size > protocol.MAX_FRAME:
        raise SandboxError(
            f"{what} {describe_size(size)} of JSON, over the sandbox's limit of "
            f"{describe_size(protocol.MAX_FRAME)} per run; pass less data to custom code",
            error_type="input_too_large",
        )


def check_outputs(outputs: Any) -> None:
    if depth_exceeds(outputs, MAX_VALUE_DEPTH):
        raise SandboxError(
            f"the outputs are nested more than {MAX_VALUE_DEPTH} levels deep; return flatter data",
            error_type="output_invalid",
        )


def decode_answer(body: bytes) -> Answer:
    """A frame from the server; one too deep to decode becomes that run's `output_invalid`."""
    try:
        answer: Answer = json.loads(body)
        return answer
    except RecursionError:
        found = _ANSWER_ID.match(body)
        if found is None:
            raise ValueError("an undecodable frame from the sandbox") from None
        message = f"the outputs are nested more than {MAX_VALUE_DEPTH} levels deep; return flatter data"
        return {"id": json.loads(found.group(1)), "ok": False, "error_type": "output_invalid", "message": message}


def _kill_group(leader: int) -> None:
    """SIGKILL the fork server's process group (it leads a session of its own; runs cannot leave it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signal.SIGKILL)


def _raise_for(answer: Answer) -> None:
    error_type = answer.get("error_type", "code_error")
    message = answer.get("message", "the code failed")
    if error_type == "timeout":
        raise ElementTimeout(message)
    raise SandboxError(message, error_type=error_type)


class SandboxClient:
    def __init__(self, python: str | None = None, max_concurrent_runs: int = 64, max_runs_per_flow: int = 8):
        self.python = python or sys.executable
        self.max_concurrent_runs = max_concurrent_runs
        self.max_runs_per_flow = max_runs_per_flow
        self.server_pid: int | None = None
        self.isolation: str | None = None  # the fork server's active isolation level (its ready frame)
        self.isolation_log: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[str, asyncio.Future[Answer]] = {}
        self._ids = itertools.count(1)
        self._lock: asyncio.Lock | None = None
        self._slots: FairSlots | None = None

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # asyncio objects belong to one loop: start over on a new one
            self.terminate()
            self._process, self._reader, self._loop, self.server_pid = None, None, loop, None
            self._lock = asyncio.Lock()
            self._slots = FairSlots(self.max_concurrent_runs, self.max_runs_per_flow)

    async def _server(self) -> asyncio.subprocess.Process:
        self._bind_loop()
        assert self._lock is not None
        async with self._lock:
            if self._process is not None and self._process.returncode is None:
                return self._process
            process = await asyncio.create_subprocess_exec(
                self.python, "-s", "-m", "services.sandbox.forkserver",
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
                env=sandbox_environment(), cwd=PROJECT_ROOT, start_new_session=True,
            )  # fmt: skip
            try:
                ready = await self._read_frame(process)
            except BaseException as exc:  # cancelled or broken while starting: leave no process behind
                _kill_group(process.pid)  # the server and whatever it forked already
                await process.wait()
                if isinstance(exc, asyncio.IncompleteReadError | ValueError):
                    raise SandboxError(
                        "the sandbox process did not start", error_type="sandbox_unavailable", transient=True
                    ) from None
                raise
            self.server_pid = ready["pid"]
            self.isolation, self.isolation_log = ready.get("isolation"), ready.get("log", [])
            self._process = process
            self._reader = asyncio.get_running_loop().create_task(self._read_answers(process))
            return process

    @staticmethod
    async def _read_frame(process: asyncio.subprocess.Process) -> Answer:
        assert process.stdout is not None
        (size,) = protocol.HEADER.unpack(await process.stdout.readexactly(protocol.HEADER.size))
        return decode_answer(await process.stdout.readexactly(size))

    async def _read_answers(self, process: asyncio.subprocess.Process) -> None:
        try:
            while True:
                answer = await self._read_frame(process)
                run_id = answer.get("id")
                future = self._waiting.pop(run_id, None) if run_id is not None else None
                if future is not None and not future.done():
                    future.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            if self._process is process:  # the next run starts a new server
                self._process = None
            _kill_group(process.pid)  # runs outlive a killed server unless their whole group goes
            lost = SandboxError("the sandbox process stopped unexpectedly", error_type="sandbox_unavailable")
            lost.transient = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(lost)
            self._waiting.clear()

    @staticmethod
    def _send(process: asyncio.subprocess.Process, frame: bytes) -> None:
        if process.returncode is None and process.stdin is not None and not process.stdin.is_closing():
            process.stdin.write(frame)

    async def run(
        self,
        code: str,
        inputs: dict[str, Any],
        *,
        memory_mb: int,
        cpu_seconds: int,
        timeout: float,
        output_limit: int = OUTPUT_LIMIT,
        print_limit: int = PRINT_LIMIT,
        label: str = "",
    ) -> dict[str, Any]:
        """Run `code` in a fresh child; `label` (flow/element) is for the Ray variant's task names."""
        check_inputs(inputs)  # before anything is queued: a refused run leaves nothing behind
        self._bind_loop()
        assert self._slots is not None
        flow = label.partition("/")[0]
        loop = asyncio.get_running_loop()
        queued_at = loop.time()
        try:
            await asyncio.wait_for(self._slots.acquire(flow), timeout)
        except TimeoutError:
            raise ElementTimeout(f"no sandbox slot became free within the timeout of {timeout:g} s") from None
        try:
            remaining = max(timeout - (loop.time() - queued_at), 0.001)  # the wait counts against the timeout
            limits = {"memory_mb": memory_mb, "cpu_seconds": cpu_seconds, "timeout": remaining}
            answer = await self._send_and_wait(code, inputs, limits, output_limit, print_limit)
        finally:
            self._slots.release(flow)
        if not answer.get("ok"):
            _raise_for(answer)
        check_outputs(answer.get("outputs"))
        return {"outputs": answer["outputs"], "printed": answer.get("printed", ""), "pid": answer.get("pid")}

    async def _send_and_wait(
        self, code: str, inputs: dict[str, Any], limits: dict[str, Any], output_limit: int, print_limit: int
    ) -> Answer:
        """One run through the server, holding a slot: its answer (or the error that ended the wait)."""
        run_id = f"run-{next(self._ids)}"
        sizes = {"output_limit": output_limit, "print_limit": print_limit}
        try:
            frame = encode_request({"op": "run", "id": run_id, "code": code, "inputs": inputs, **limits, **sizes})
        except (TypeError, ValueError) as exc:  # e.g. code that is not a str
            raise SandboxError(f"the run request is not JSON data: {exc}", error_type="input_invalid") from None
        _check_frame(len(frame) - protocol.HEADER.size, "the run request (code and inputs) is")
        timeout = limits["timeout"]
        process = await self._server()  # then no await until the run is sent: the reader sees it
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting[run_id] = future
        try:
            self._send(process, frame)
            return await asyncio.wait_for(future, timeout + _GRACE)
        except BaseException as exc:  # cancelled (flow cancel, element timeout) or no answer in time
            self._waiting.pop(run_id, None)
            self._send(process, encode_request({"op": "kill", "id": run_id}))
            if isinstance(exc, TimeoutError):
                raise ElementTimeout(f"the sandbox did not answer within {timeout + _GRACE:g} s") from None
            raise

    async def start(self) -> None:
        """Start the fork server now rather than on the first run."""
        await self._server()

    def terminate(self) -> None:
        """Kill the fork server and every child at once (its process group), from any thread."""
        if self.server_pid is not None:
            _kill_group(self.server_pid)

    async def aclose(self) -> None:
        """Stop the fork server (closing its stdin makes it kill its children and exit)."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 3)
            except TimeoutError:
                self.terminate()
                await process.wait()
        if self._reader is not None:
            self._reader.cancel()
        self.server_pid = None
