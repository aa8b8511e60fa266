"""The fork server: a plain single-threaded process that forks one child per run.

Started by `SandboxClient` as `python -m services.sandbox.forkserver` with a minimal
environment (no secrets). RestrictedPython and the policy are imported once here, so a child
starts warm (~ms). Requests arrive on stdin, answers leave on stdout (see `protocol`):
`{"op": "run", "id", ...limits, "code", "inputs"}` → `{"id", "ok", ...}`; `{"op": "kill", "id"}`
kills that child at once. The server kills a child at its wall-clock `timeout`, reaps every
child, classifies deaths by signal (CPU limit, memory, killed) and, when stdin closes, kills
all children and exits. It never runs user code itself.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from services.sandbox import protocol
from services.sandbox.child import run_in_child


@dataclass
class _Run:
    id: str
    pid: int
    fd: int
    deadline: float
    timeout: float
    killed: str | None = None
    data: bytearray = field(default_factory=bytearray)


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


class ForkServer:
    def __init__(self, stdin: int, stdout: int):
        self.stdin = stdin
        self.stdout = stdout
        self.selector = selectors.DefaultSelector()
        self.runs: dict[str, _Run] = {}
        self.by_fd: dict[int, _Run] = {}
        self.inbox = bytearray()

    def send(self, message: dict[str, Any]) -> None:
        data = protocol.encode(message)
        view = memoryview(data)
        while view:
            view = view[os.write(self.stdout, view) :]

    def start(self, request: dict[str, Any]) -> None:
        read_fd, write_fd = os.pipe()
        base = _address_space()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            for fd in [self.stdin, self.stdout, *self.by_fd]:
                try:
                    os.close(fd)
                except OSError:
                    pass
            run_in_child(request, write_fd, base)
        os.close(write_fd)
        timeout = float(request["timeout"])
        run = _Run(request["id"], pid, read_fd, time.monotonic() + timeout, timeout)
        self.runs[run.id] = run
        self.by_fd[read_fd] = run
        self.selector.register(read_fd, selectors.EVENT_READ)

    def kill(self, run_id: str, reason: str) -> None:
        run = self.runs.get(run_id)
        if run is not None and run.killed is None:
            run.killed = reason
            try:
                os.kill(run.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def finish(self, run: _Run) -> None:
        self.selector.unregister(run.fd)
        os.close(run.fd)
        del self.by_fd[run.fd]
        del self.runs[run.id]
        _, status = os.waitpid(run.pid, 0)
        self.send({"id": run.id, "pid": run.pid, **self.answer(run, status)})

    @staticmethod
    def answer(run: _Run, status: int) -> dict[str, Any]:
        if run.killed == "timeout":
            return {"ok": False, "error_type": "timeout", "message": f"the code ran longer than {run.timeout:g} s"}
        if run.killed is not None:
            return {"ok": False, "error_type": "cancelled", "message": "the run was cancelled"}
        if run.data:
            try:
                return json.loads(bytes(run.data))
            except ValueError:
                pass
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig in (signal.SIGXCPU, signal.SIGKILL):
                return {"ok": False, "error_type": "cpu_limit", "message": "the code used more CPU time than allowed"}
            return {
                "ok": False,
                "error_type": "crashed",
                "message": f"the code's process died ({signal.Signals(sig).name})",
            }
        return {"ok": False, "error_type": "memory_limit", "message": "the code's process ended without an answer"}

    def on_child_data(self, fd: int) -> None:
        run = self.by_fd[fd]
        chunk = os.read(fd, 65536)
        if chunk:
            run.data += chunk
        else:
            self.finish(run)

    def on_request(self) -> bool:
        chunk = os.read(self.stdin, 1 << 20)
        if not chunk:
            return False
        self.inbox += chunk
        for request in protocol.split_frames(self.inbox):
            if request.get("op") == "kill":
                self.kill(request["id"], "cancelled")
            else:
                self.start(request)
        return True

    def serve(self) -> None:
        self.selector.register(self.stdin, selectors.EVENT_READ)
        self.send({"id": None, "ready": True, "pid": os.getpid()})
        while True:
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.deadline <= now:
                    self.kill(run.id, "timeout")
            wait = min((r.deadline for r in self.runs.values() if r.killed is None), default=now + 1.0) - now
            for key, _ in self.selector.select(timeout=max(wait, 0.001)):
                if key.fd == self.stdin:
                    if not self.on_request():
                        return self.shutdown()
                else:
                    self.on_child_data(key.fd)

    def shutdown(self) -> None:
        for run in list(self.runs.values()):
            self.kill(run.id, "cancelled")
        for run in list(self.runs.values()):
            os.waitpid(run.pid, 0)


if __name__ == "__main__":
    ForkServer(sys.stdin.fileno(), sys.stdout.fileno()).serve()
