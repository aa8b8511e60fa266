"""One run's process: lock itself down, read its own request, compile and run the user's code, answer.

Contract: `serve_run(plan, request_fd, result_fd, devnull)` never returns. It runs in a process
forked from the clean template (`template`), which has read nothing of any run. Before it reads
a byte of its request it
- keeps only its request pipe (fd 0), /dev/null (fd 1, 2) and its answer pipe (fd 3);
- takes its own uid (`isolation` explains which) and drops every capability; enters the
  template's Landlock ruleset when there is one; loads the seccomp filter (no sockets, no new
  processes, no signals, no ptrace, no mounts; sets PR_SET_NO_NEW_PRIVS);
- sets `RLIMIT_NOFILE` 4, `RLIMIT_FSIZE` 0, `RLIMIT_CORE` 0, `RLIMIT_NPROC` 0.
Then it reads the request (`{"code", "inputs", "memory_mb", "cpu_seconds", "output_limit",
"print_limit"}`) to EOF, sets `RLIMIT_AS` (the template's address space + the request's size
+ `memory_mb`), `RLIMIT_CPU` (soft = hard: a PID-1 process ignores SIGXCPU, the kernel's
SIGKILL at the hard limit always lands) and the recursion limit, compiles the code with
RestrictedPython (under those limits: a compile bomb only hurts this run) and runs it.
It writes `{"ok": true, "outputs", "printed"}` or `{"ok": false, "error_type", "message"}`
(message with the user's line number when known) to fd 3 and `os._exit`s. Outputs must be a
JSON object no larger than `output_limit` bytes.

`plan.unrestricted` (tests only: the fork server sets it only when started with
`SANDBOX_TEST_UNRESTRICTED=1`) lets a request flagged `unrestricted` run plain Python, to test
the OS layers as if RestrictedPython were broken.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from dataclasses import dataclass
from types import CodeType
from typing import Any, NoReturn

from services.sandbox import guards, isolation, policy
from services.sandbox.modules import Forbidden

REQUEST_FD = 0
RESULT_FD = 3
NOBODY = 65534
MAX_REQUEST = 80 * 1024 * 1024


@dataclass
class Plan:
    """What one run's process does to itself, decided by the template."""

    layers: isolation.Layers
    slot: int
    service_root: bool
    base_address_space: int
    unrestricted: bool = False


def _user_line(exc: BaseException) -> int | None:
    lines = [
        line for frame, line in traceback.walk_tb(exc.__traceback__) if frame.f_code.co_filename == policy.FILENAME
    ]
    return lines[-1] if lines else None


def failure(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    line = _user_line(exc) if exc is not None else None
    return {"ok": False, "error_type": error_type, "message": message + (f" (line {line})" if line else "")}


_BUILTINS = guards.user_builtins()  # built once in the fork server; each child has its own copy-on-write


def _execute(request: dict[str, Any], code: CodeType | None) -> dict[str, Any]:
    printer = guards.CappedPrint(int(request["print_limit"]))
    try:
        if code is None:
            code = policy.compile_user_code(request["code"])
        namespace = policy.restricted_globals(printer, _BUILTINS)
        namespace["inputs"] = request["inputs"]  # for a bare script; `main` gets them as its argument
        exec(code, namespace)
        outputs = policy.entry(namespace, request["inputs"])
    except policy.CodeRejected as exc:
        return failure(exc.error_type, exc.message)
    except Forbidden as exc:
        return failure("forbidden", f"not allowed in custom code: {exc}", exc)
    except MemoryError as exc:
        return failure("memory_limit", f"the code needed more than {request['memory_mb']} MB of memory", exc)
    except RecursionError as exc:
        return failure("recursion_limit", "the code recursed too deeply", exc)
    except guards.PrintLimitExceeded as exc:
        return failure("output_too_large", str(exc), exc)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt and the like are user errors here
        return failure("code_error", f"{type(exc).__name__}: {exc}", exc)
    if not isinstance(outputs, dict):
        return failure("code_error", f"main() must return a dict of outputs, got {type(outputs).__name__}")
    return {"ok": True, "outputs": outputs, "printed": printer()}


def _encode(answer: dict[str, Any], output_limit: int) -> bytes:
    try:
        payload = json.dumps(answer, allow_nan=False, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        return json.dumps(failure("code_error", f"the outputs must be JSON data: {exc}")).encode()
    except RecursionError:
        return json.dumps(failure("code_error", "the outputs are nested too deeply")).encode()
    if len(payload) > output_limit:
        message = f"the outputs are {len(payload)} bytes of JSON, over the limit of {output_limit}"
        return json.dumps(failure("output_too_large", message)).encode()
    return payload


def _execute_unrestricted(request: dict[str, Any]) -> dict[str, Any]:
    """Tests only: plain Python with every builtin, as if RestrictedPython were broken."""
    namespace: dict[str, Any] = {"inputs": request["inputs"], "__name__": "unrestricted"}
    try:
        exec(compile(request["code"], "<unrestricted>", "exec"), namespace)
    except BaseException as exc:
        return failure("code_error", f"{type(exc).__name__}: {exc}")
    outputs = namespace.get("outputs")
    if isinstance(outputs, bytes):  # a test speaking the protocol itself: written as is
        return {"raw": outputs}
    return {"ok": True, "outputs": outputs, "printed": ""}


def _take_identity(plan: Plan) -> None:
    level = plan.layers.level
    if plan.service_root and level == isolation.NAMESPACES:  # a uid of its own in the namespace's range
        os.setresgid(plan.slot + 1, plan.slot + 1, plan.slot + 1)
        os.setresuid(plan.slot + 1, plan.slot + 1, plan.slot + 1)
    elif plan.service_root and level == isolation.LANDLOCK:  # a host uid of its own
        uid = isolation.UID_BASE + plan.slot + 1
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    elif os.getuid() == 0 and level == isolation.OPT_OUT:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    if level in (isolation.NAMESPACES, isolation.LANDLOCK):
        isolation.drop_capabilities()


def _lock_down_run(plan: Plan, request_fd: int, result_fd: int, devnull: int) -> None:
    os.dup2(request_fd, REQUEST_FD)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.dup2(result_fd, RESULT_FD)
    keep = plan.layers.landlock_fd
    for fd in (request_fd, result_fd, devnull):
        if fd > RESULT_FD and fd != keep:
            os.close(fd)
    _take_identity(plan)
    if plan.layers.level in (isolation.NAMESPACES, isolation.LANDLOCK):
        isolation.set_no_new_privs()
        if keep is not None:
            isolation.landlock_restrict(keep)
    os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    for limit, value in (
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_NOFILE, (RESULT_FD + 1, RESULT_FD + 1)),
        (resource.RLIMIT_NPROC, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(limit, value)
    if plan.layers.seccomp is not None:
        plan.layers.seccomp.load()


def _read_request() -> bytes:
    data = bytearray()
    while chunk := os.read(REQUEST_FD, 1 << 20):
        data += chunk
        if len(data) > MAX_REQUEST:
            break
    os.close(REQUEST_FD)
    return bytes(data)


def _apply_limits(request: dict[str, Any], plan: Plan, request_size: int) -> None:
    memory = plan.base_address_space + 10 * request_size + int(request["memory_mb"]) * 1024 * 1024
    cpu = int(request["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    sys.setrecursionlimit(int(request.get("recursion_limit", 1000)))


def serve_run(plan: Plan, request_fd: int, result_fd: int, devnull: int) -> NoReturn:
    out_of_memory = json.dumps(failure("memory_limit", "the outputs did not fit in memory")).encode()
    try:
        _lock_down_run(plan, request_fd, result_fd, devnull)
        raw = _read_request()
        request = json.loads(raw)
        _apply_limits(request, plan, len(raw))
        del raw
        try:
            if plan.unrestricted and request.get("unrestricted") is True:
                answer = _execute_unrestricted(request)
            else:
                answer = _execute(request, None)
            payload = answer["raw"] if "raw" in answer else _encode(answer, int(request["output_limit"]))
        except MemoryError:
            payload = out_of_memory
        view = memoryview(payload)
        while view:
            view = view[os.write(RESULT_FD, view) :]
        os.close(RESULT_FD)  # the answer is complete: the server need not wait for the exit
    finally:
        os._exit(0)
