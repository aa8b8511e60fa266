"""The fork server: a plain single-threaded process that forks one locked-down child per run.

Started by `SandboxClient` as `python -m services.sandbox.forkserver` with a minimal
environment (no secrets). RestrictedPython, the policy and the allowed modules are imported
once here, so a child starts warm (a few ms). The server compiles the code with RestrictedPython
(cached by source; a compile error is answered without forking) but never executes it: only
the locked-down child does.

Protocol (`protocol` frames): stdin carries `{"op": "run", "id", "code", "inputs", "memory_mb",
"cpu_seconds", "timeout", "output_limit", "print_limit"}` and `{"op": "kill", "id"}`; stdout
carries `{"id": null, "ready": true, "pid"}` once, then one `{"id", "pid", "ok", …}` per run
(the child's answer, or the server's account of its death: `timeout`, `cancelled`,
`cpu_limit`, `output_too_large`, `crashed`). Many runs may be in flight. The server kills a
child (SIGKILL) at its wall-clock `timeout` or on `kill`, caps what a child may send, reaps
every child, and when stdin closes (its owner died) kills all children and exits.
"""

from __future__ import annotations

import gc
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
from services.sandbox.modules import preload
from services.sandbox.policy import CodeRejected, compile_cached

MAX_CODE_CHARS = 1_000_000
_SLACK = 4096  # room for the error message around a capped answer


@dataclass
class _Run:
    id: str
    pid: int
    fd: int
    deadline: float
    timeout: float
    output_limit: int
    killed: str | None = None
    data: bytearray = field(default_factory=bytearray)


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _death(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return {"error_type": "cpu_limit", "message": "the code used more CPU time than allowed"}
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return {"error_type": "crashed", "message": f"the code's process died ({name}), perhaps out of memory"}
    return {
        "error_type": "crashed",
        "message": f"the code's process exited ({os.WEXITSTATUS(status)}) without an answer",
    }


class ForkServer:
    def __init__(self, stdin: int, stdout: int):
        self.stdin = stdin
        self.stdout = stdout
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.selector = selectors.DefaultSelector()
        self.runs: dict[str, _Run] = {}
        self.by_fd: dict[int, _Run] = {}
        self.inbox = bytearray()
        self.exiting: set[int] = set()  # answered children not reaped yet

    def send(self, message: dict[str, Any]) -> None:
        view = memoryview(protocol.encode(message))
        while view:
            view = view[os.write(self.stdout, view) :]

    def start(self, request: dict[str, Any]) -> None:
        try:
            if len(request["code"]) > MAX_CODE_CHARS:
                raise CodeRejected(f"the code is longer than {MAX_CODE_CHARS} characters")
            code = compile_cached(request["code"])
        except CodeRejected as exc:  # no process needed to say so
            return self.send({"id": request["id"], "ok": False, "error_type": exc.error_type, "message": exc.message})
        read_fd, write_fd = os.pipe()
        base = _address_space()
        pid = os.fork()
        if pid == 0:
            run_in_child(request, code, write_fd, self.devnull, base)
        os.close(write_fd)
        timeout = float(request["timeout"])
        run = _Run(request["id"], pid, read_fd, time.monotonic() + timeout, timeout, int(request["output_limit"]))
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
        """The child closed its pipe: answer now; reap it now or, if still exiting, soon."""
        self.selector.unregister(run.fd)
        os.close(run.fd)
        del self.by_fd[run.fd]
        del self.runs[run.id]
        answer = self.answer(run) if run.killed or not run.data else None
        if answer is None:
            try:
                answer = json.loads(bytes(run.data))
            except ValueError:
                answer = None
        if answer is None:  # no usable answer: how it died says why
            answer = self.answer(run, os.waitpid(run.pid, 0)[1])
        else:
            self.exiting.add(run.pid)
            self.reap()
        self.send({"id": run.id, "pid": run.pid, **answer})

    def reap(self) -> None:
        for pid in list(self.exiting):
            if os.waitpid(pid, os.WNOHANG)[0]:
                self.exiting.discard(pid)

    @staticmethod
    def answer(run: _Run, status: int | None = None) -> dict[str, Any] | None:
        if run.killed == "timeout":
            return {"ok": False, "error_type": "timeout", "message": f"the code ran longer than {run.timeout:g} s"}
        if run.killed == "output":
            return {"ok": False, "error_type": "output_too_large", "message": "the code sent too much output"}
        if run.killed is not None:
            return {"ok": False, "error_type": "cancelled", "message": "the run was cancelled"}
        return None if status is None else {"ok": False, **_death(status)}

    def on_child_data(self, fd: int) -> None:
        run = self.by_fd[fd]
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return self.finish(run)
        run.data += chunk
        if len(run.data) > run.output_limit + _SLACK:
            self.kill(run.id, "output")
            run.data.clear()

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

    def expire(self) -> float:
        """Kill the runs past their deadline; seconds until the next deadline."""
        now = time.monotonic()
        for run in list(self.runs.values()):
            if run.killed is None and run.deadline <= now:
                self.kill(run.id, "timeout")
        return min((r.deadline for r in self.runs.values() if r.killed is None), default=now + 1.0) - now

    def serve(self) -> None:
        self.selector.register(self.stdin, selectors.EVENT_READ)
        self.send({"id": None, "ready": True, "pid": os.getpid()})
        while True:
            wait = min(self.expire(), 0.05) if self.exiting else self.expire()
            for key, _ in self.selector.select(timeout=max(wait, 0.001)):
                if key.fd != self.stdin:
                    self.on_child_data(key.fd)
                elif not self.on_request():
                    return self.shutdown()
            self.reap()

    def shutdown(self) -> None:
        for run in list(self.runs.values()):
            self.kill(run.id, "cancelled")
        for pid in [run.pid for run in self.runs.values()] + list(self.exiting):
            os.waitpid(pid, 0)


def main() -> None:
    preload()
    gc.collect()
    gc.freeze()  # children share these pages instead of copying them on first GC
    ForkServer(sys.stdin.fileno(), sys.stdout.fileno()).serve()


if __name__ == "__main__":
    main()
