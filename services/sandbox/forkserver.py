"""The fork server: a clean template that forks the runs, and a broker that treats every run as hostile.

Started by `SandboxClient` as `python -m services.sandbox.forkserver` with a minimal environment
(no secrets). `main` imports everything a run needs, then splits in two before reading a byte:
- the first process (its pid is the server's pid, the group every run stays in) becomes the
  template (`template`): it isolates itself (`isolation`: namespaces and an empty read-only root,
  or Landlock) and forks one run per command — it never sees a request;
- a double-forked broker (`Broker`, not a child of the template) owns stdin/stdout.

Protocol (`protocol` frames): stdin carries `{"op": "run", "id", "code", "inputs", "memory_mb",
"cpu_seconds", "timeout", "output_limit", "print_limit"}` and `{"op": "kill", "id"}`; stdout
carries `{"id": null, "ready": true, "pid", "isolation", "layers", "log"}` once, then one
`{"id", "pid", "ok", …}` per run. `isolation` is the active level (`namespaces+seccomp`,
`landlock+seccomp`, `restricted-python-only`, or `none`: then every run is answered
`sandbox_unavailable` with the reason, fail closed); `log` says what was tried.

The broker writes each request to its run's own pipe (no shared buffer a run could read), so a
run's id is the broker's, tied to the pipe: a run cannot answer for another. It reads an answer
with a size cap and a strict shape (`{"ok": true, "outputs": dict, "printed": str}` or
`{"ok": false, "error_type": <one the code may report>, "message": str}`); anything else is that
run's `sandbox_protocol` error. It never blocks on a run: the kill at the wall-clock `timeout`
(SIGKILL through a pidfd) applies whatever the run did to its pipes; exit statuses come from the
template's helpers as messages (`cpu_limit`, `crashed`). The broker dies with the template and
vice versa; when stdin closes (its owner died) it exits and the template kills every run.
"""

from __future__ import annotations

import gc
import json
import os
import selectors
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from services.sandbox import child, isolation, protocol, template
from services.sandbox.modules import preload

MAX_CODE_CHARS = 1_000_000
MAX_MESSAGE_CHARS = 10_000
_SLACK = 4096  # room for the error message around a capped answer
_STATUS_GRACE = 2.0  # seconds to wait for a dead run's exit status before calling it crashed
SPARES = 2  # runs forked and locked down ahead of requests: a request finds one waiting for its input
TEST_UNRESTRICTED_ENV = "SANDBOX_TEST_UNRESTRICTED"
TEST_UNRESTRICTED_MARK = "#!unrestricted\n"  # honoured only when the server was started with TEST_UNRESTRICTED_ENV=1
CHILD_ERRORS = frozenset({"code_error", "forbidden", "memory_limit", "recursion_limit", "output_too_large"})


@dataclass
class _Run:
    id: str
    token: int
    payload: bytes
    deadline: float
    timeout: float
    output_limit: int
    slot: int | None = None
    pid: int | None = None
    request_fd: int | None = None
    answer_fd: int | None = None
    pidfd: int | None = None
    written: int = 0
    data: bytearray = field(default_factory=bytearray)
    eof: bool = False
    killed: str | None = None
    answered: bool = False
    status: int | None = None
    exited_at: float | None = None


def _death(status: int) -> dict[str, Any]:
    if status < 0:
        return {"error_type": "crashed", "message": "the code's process could not be started"}
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL):
        return {"error_type": "cpu_limit", "message": "the code used more CPU time than allowed"}
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return {"error_type": "crashed", "message": f"the code's process died ({name}), perhaps out of memory"}
    return {
        "error_type": "crashed",
        "message": f"the code's process exited ({os.WEXITSTATUS(status)}) without an answer",
    }


def parse_answer(data: bytes) -> dict[str, Any] | None:
    """The run's answer if it has exactly the expected shape, else None."""
    try:
        answer = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(answer, dict) or type(answer.get("ok")) is not bool:
        return None
    if answer["ok"]:
        if set(answer) == {"ok", "outputs", "printed"} and isinstance(answer["outputs"], dict):
            return answer if isinstance(answer["printed"], str) else None
        return None
    if set(answer) != {"ok", "error_type", "message"} or answer["error_type"] not in CHILD_ERRORS:
        return None
    message = answer["message"]
    return answer if isinstance(message, str) and len(message) <= MAX_MESSAGE_CHARS else None


class Broker:
    def __init__(self, stdin: int, stdout: int, sock: socket.socket, template_pid: int, unrestricted: bool):
        self.stdin = stdin
        self.stdout = stdout
        self.sock = sock
        self.template_pid = template_pid
        self.template_pidfd = os.pidfd_open(template_pid)
        self.unrestricted = unrestricted
        self.selector = selectors.DefaultSelector()
        self.runs: dict[str, _Run] = {}
        self.by_token: dict[int, _Run] = {}
        self.by_fd: dict[int, tuple[str, _Run]] = {}
        self.free_slots = deque(range(isolation.SLOTS))
        self.queued: deque[_Run] = deque()
        self.spares: deque[_Run] = deque()  # spawned, locked down, blocked reading a request not yet written
        self.tokens = 0
        self.inbox = bytearray()
        self.level = isolation.NONE
        self.refusal = ""

    # --- the client side ----------------------------------------------------------------------

    def send(self, message: dict[str, Any]) -> None:
        view = memoryview(protocol.encode(message))
        while view:
            view = view[os.write(self.stdout, view) :]

    def respond(self, run: _Run, answer: dict[str, Any]) -> None:
        if not run.answered:
            run.answered = True
            self.send({"id": run.id, "pid": run.pid, **answer})
            self.spawn_queued()  # a new spare for the next request
        self.release(run)

    def handshake(self) -> dict[str, Any]:
        """Map the template's uids if it asks, then its report of the active level."""
        while True:
            message: dict[str, Any] | None = json.loads(self.sock.recv(1 << 16) or b"null")
            if message is None:
                raise SystemExit("the template died while starting")
            if not message.get("unshared"):
                return message
            try:
                isolation.write_id_maps(self.template_pid, os.getuid(), os.getgid())
                self.sock.send(json.dumps({"mapped": True}).encode())
            except OSError as exc:
                self.sock.send(json.dumps({"mapped": False, "error": str(exc)}).encode())

    def start(self, request: dict[str, Any]) -> None:
        run_id = request.get("id")
        try:
            code, inputs = request["code"], request["inputs"]
            timeout, output_limit = float(request["timeout"]), int(request["output_limit"])
            limits = {key: int(request[key]) for key in ("memory_mb", "cpu_seconds", "print_limit", "output_limit")}
            if not isinstance(code, str) or not isinstance(run_id, str) or run_id in self.runs:
                raise ValueError("bad request")
        except (KeyError, TypeError, ValueError):
            return self.send({"id": run_id, "ok": False, "error_type": "code_error", "message": "malformed request"})
        if self.level == isolation.NONE:
            message = f"custom code is disabled: no OS isolation is available ({self.refusal})"
            return self.send({"id": run_id, "ok": False, "error_type": "sandbox_unavailable", "message": message})
        if len(code) > MAX_CODE_CHARS:
            message = f"the code is longer than {MAX_CODE_CHARS} characters"
            return self.send({"id": run_id, "ok": False, "error_type": "code_error", "message": message})
        body: dict[str, Any] = {"code": code, "inputs": inputs, **limits}
        if self.unrestricted and code.startswith(TEST_UNRESTRICTED_MARK):
            body["unrestricted"] = True
        payload, deadline = json.dumps(body).encode(), time.monotonic() + timeout
        if self.spares:  # the common case: a run is already waiting, only its request is missing
            run = self.spares.popleft()
            run.id, run.payload, run.deadline, run.timeout, run.output_limit = (
                run_id,
                payload,
                deadline,
                timeout,
                output_limit,
            )
            self.runs[run_id] = run
            if run.request_fd is not None:
                self.watch(run.request_fd, "request", run, selectors.EVENT_WRITE)
            return  # the spare is replaced once this run has answered: no fork competes with it
        self.tokens += 1
        run = _Run(run_id, self.tokens, payload, deadline, timeout, output_limit)
        self.runs[run_id] = run
        self.by_token[run.token] = run
        self.queued.append(run)
        self.spawn_queued()

    def spawn_queued(self) -> None:
        """Spawn the queued runs while slots are free, then keep `SPARES` runs waiting ahead."""
        while self.queued and self.free_slots:
            self.spawn(self.queued.popleft())
        while len(self.spares) < SPARES and self.free_slots and self.level != isolation.NONE:
            self.tokens += 1
            spare = _Run("", self.tokens, b"", float("inf"), 0.0, 0)
            self.by_token[spare.token] = spare
            self.spares.append(spare)
            self.spawn(spare)

    def spawn(self, run: _Run) -> None:
        run.slot = self.free_slots.popleft()
        self.sock.send(json.dumps({"spawn": run.token, "slot": run.slot}).encode())

    def kill(self, run: _Run, reason: str) -> None:
        if run.killed is None:
            run.killed = reason
        if run.pidfd is not None:
            try:
                signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        elif run.slot is None and run in self.queued:  # never started: nothing to wait for
            self.queued.remove(run)
            run.exited_at = time.monotonic()

    def cancel(self, run_id: Any) -> None:
        run = self.runs.get(run_id) if isinstance(run_id, str) else None
        if run is not None and not run.answered:
            self.kill(run, "cancelled")
            self.respond(run, {"ok": False, "error_type": "cancelled", "message": "the run was cancelled"})

    def on_request(self) -> bool:
        chunk = os.read(self.stdin, 1 << 20)
        if not chunk:
            return False
        self.inbox += chunk
        for request in protocol.split_frames(self.inbox):
            if not isinstance(request, dict):
                continue
            if request.get("op") == "kill":
                self.cancel(request.get("id"))
            else:
                self.start(request)
        return True

    # --- the template side ----------------------------------------------------------------------

    def on_template(self) -> None:
        data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 3)
        if not data:
            raise SystemExit("the template is gone")
        message = json.loads(data)
        if "spawned" in message:
            run = self.by_token.get(message["spawned"])
            if run is None or len(fds) != 3:
                for fd in fds:
                    os.close(fd)
                return
            run.request_fd, run.answer_fd, run.pidfd = fds
            run.pid = int(message["pid"])
            os.set_blocking(run.request_fd, False)
            if run.id:  # a spare is given its request when one comes
                self.watch(run.request_fd, "request", run, selectors.EVENT_WRITE)
            self.watch(run.answer_fd, "answer", run, selectors.EVENT_READ)
            self.watch(run.pidfd, "pidfd", run, selectors.EVENT_READ)
            if run.killed or run.answered:
                self.kill(run, run.killed or "cancelled")
        elif "exited" in message or "failed" in message:
            run = self.by_token.get(message.get("exited", message.get("failed")))
            if run is not None:
                run.status = message.get("status", -1)
                run.exited_at = run.exited_at or time.monotonic()
                self.settle(run)

    def watch(self, fd: int, kind: str, run: _Run, events: int) -> None:
        self.by_fd[fd] = (kind, run)
        self.selector.register(fd, events)

    def unwatch(self, fd: int | None) -> None:
        """Stop watching `fd` (if watched) and close it; the caller forgets it."""
        if fd is None:
            return
        if fd in self.by_fd:
            del self.by_fd[fd]
            self.selector.unregister(fd)
        os.close(fd)

    def on_fd(self, fd: int) -> None:
        kind, run = self.by_fd[fd]
        if kind == "request":
            self.feed(run)
        elif kind == "answer":
            self.on_answer_data(run)
        else:
            self.unwatch(run.pidfd)  # the run's process has exited (the status follows from its helper)
            run.pidfd = None
            run.exited_at = run.exited_at or time.monotonic()
            self.settle(run)

    def feed(self, run: _Run) -> None:
        assert run.request_fd is not None  # watched (so fed) only while open
        try:
            run.written += os.write(run.request_fd, run.payload[run.written : run.written + (1 << 20)])
        except BlockingIOError:
            return
        except OSError:  # the run went away before reading its request: its status will tell
            run.written = len(run.payload)
        if run.written >= len(run.payload):
            self.unwatch(run.request_fd)
            run.request_fd = None
            run.payload = b""

    def on_answer_data(self, run: _Run) -> None:
        assert run.answer_fd is not None  # watched (so read) only while open
        chunk = os.read(run.answer_fd, 1 << 16)
        if chunk:
            run.data += chunk
            if len(run.data) > run.output_limit + _SLACK and not run.answered:
                self.kill(run, "output")
                run.data.clear()
                self.respond(
                    run, {"ok": False, "error_type": "output_too_large", "message": "the code sent too much output"}
                )
            return
        self.unwatch(run.answer_fd)
        run.answer_fd = None
        run.eof = True
        if not run.answered and run.data:
            answer = parse_answer(bytes(run.data))
            run.data.clear()
            if answer is None:
                answer = {
                    "ok": False,
                    "error_type": "sandbox_protocol",
                    "message": "the code's process sent a malformed answer",
                }
            self.kill(run, "answered")  # whatever it does next, it is done
            self.respond(run, answer)
        self.settle(run)

    def settle(self, run: _Run) -> None:
        """Answer from the exit status once there is nothing better; forget the run once its process is gone."""
        if not run.id:  # a spare died before it had a request: nobody to answer
            if run in self.spares:
                self.spares.remove(run)
            run.answered = True
        elif not run.answered and run.status is not None and (run.eof or run.answer_fd is None):
            self.respond(run, {"ok": False, **_death(run.status)})
        self.release(run)

    def release(self, run: _Run) -> None:
        if not run.answered or run.exited_at is None or (run.status is None and run.pid is not None):
            return
        for fd in (run.request_fd, run.answer_fd, run.pidfd):
            self.unwatch(fd)
        run.request_fd = run.answer_fd = run.pidfd = None
        self.runs.pop(run.id, None)
        self.by_token.pop(run.token, None)
        if run.slot is not None:  # the uid is free again only now that its process is dead
            self.free_slots.append(run.slot)
            run.slot = None
            self.spawn_queued()

    def expire(self) -> float:
        """Kill the runs past their deadline; seconds until the next deadline."""
        now = time.monotonic()
        wait = 1.0
        for run in list(self.runs.values()):
            if not run.answered and run.deadline <= now:
                self.kill(run, "timeout")
                message = f"the code ran longer than {run.timeout:g} s"
                self.respond(run, {"ok": False, "error_type": "timeout", "message": message})
            elif run.exited_at is not None and run.status is None and now - run.exited_at > _STATUS_GRACE:
                run.status = -1  # its helper never reported: count it as a crash
                if not run.answered:
                    message = "the code's process died without an answer"
                    self.respond(run, {"ok": False, "error_type": "crashed", "message": message})
                self.release(run)
            elif not run.answered:
                wait = min(wait, run.deadline - now)
            elif run.exited_at is not None:
                wait = min(wait, 0.1)
        return wait

    def serve(self) -> None:
        isolation.make_undumpable()
        report = self.handshake()
        self.level, self.refusal = report.get("level", isolation.NONE), "; ".join(report.get("log", []))
        ready = {"id": None, "ready": True, "pid": self.template_pid, "isolation": self.level}
        self.send({**ready, "layers": report.get("layers", []), "log": report.get("log", [])})
        self.selector.register(self.stdin, selectors.EVENT_READ)
        self.selector.register(self.sock, selectors.EVENT_READ)
        self.selector.register(self.template_pidfd, selectors.EVENT_READ)
        self.spawn_queued()  # the first spares
        while True:
            for key, _ in self.selector.select(timeout=max(self.expire(), 0.001)):
                if key.fd == self.stdin:
                    if not self.on_request():
                        return
                elif key.fd == self.sock.fileno():
                    self.on_template()
                elif key.fd == self.template_pidfd:
                    return
                elif key.fd in self.by_fd:
                    self.on_fd(key.fd)


def main() -> None:
    preload()
    level_request = isolation.requested_level()
    unrestricted = os.environ.get(TEST_UNRESTRICTED_ENV) == "1"
    devnull = os.open(os.devnull, os.O_RDWR)
    broker_end, template_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    template_pid = os.getpid()
    gc.collect()
    gc.freeze()  # runs share these pages instead of copying them on first GC
    middle = os.fork()
    if middle == 0:  # double fork: the broker is not a child of the template (whose children are runs)
        if os.fork() == 0:
            template_end.close()
            os.close(devnull)
            try:
                Broker(sys.stdin.fileno(), sys.stdout.fileno(), broker_end, template_pid, unrestricted).serve()
            finally:
                os._exit(0)
        os._exit(0)
    os.waitpid(middle, 0)
    broker_end.close()
    os.dup2(devnull, 0)  # the template never reads a request
    os.dup2(devnull, 1)
    template.serve_template(template_end, devnull, level_request, unrestricted)


assert callable(child.serve_run)  # imported here so that the template has it before it is isolated

if __name__ == "__main__":
    main()
