"""One forked child: lock itself down, run the user's code, write one JSON answer, exit.

Contract: `run_in_child(request, code, result_fd, devnull, base_address_space)` never returns.
`code` is the user's code compiled by `policy` in the fork server. Before it runs the child
- keeps only fd 0–2 (/dev/null) and the result pipe (as fd 3), and sets `RLIMIT_NOFILE` to 4:
  no file, socket or pipe can be opened, whatever the code manages;
- when started as root, drops to uid/gid 65534 (nobody) with no groups, which also makes
  `RLIMIT_NPROC = 0` effective (root ignores it): no new processes;
- sets `RLIMIT_AS` (the fork server's own address space + `memory_mb`), `RLIMIT_CPU`,
  `RLIMIT_FSIZE = 0`, `RLIMIT_CORE = 0` and a recursion limit.
It then writes `{"ok": true, "outputs", "printed"}` or `{"ok": false, "error_type", "message"}`
(message with the user's line number when known) to fd 3 and `os._exit`s. Outputs must be a
JSON object no larger than `output_limit` bytes.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from types import CodeType
from typing import Any, NoReturn

from services.sandbox import guards, policy
from services.sandbox.modules import Forbidden

RESULT_FD = 3
NOBODY = 65534


def _isolate(result_fd: int, devnull: int) -> None:
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if result_fd != RESULT_FD:
        os.dup2(result_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[1])


def _lock_down(request: dict[str, Any], base_address_space: int) -> None:
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    memory = base_address_space + int(request["memory_mb"]) * 1024 * 1024
    cpu = int(request["cpu_seconds"])
    for limit, value in (
        (resource.RLIMIT_AS, (memory, memory)),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),  # SIGXCPU at the soft limit, SIGKILL one second later
        (resource.RLIMIT_FSIZE, (0, 0)),
        (resource.RLIMIT_NOFILE, (RESULT_FD + 1, RESULT_FD + 1)),
        (resource.RLIMIT_NPROC, (0, 0)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(limit, value)
    sys.setrecursionlimit(int(request.get("recursion_limit", 1000)))


def _user_line(exc: BaseException) -> int | None:
    lines = [
        line for frame, line in traceback.walk_tb(exc.__traceback__) if frame.f_code.co_filename == policy.FILENAME
    ]
    return lines[-1] if lines else None


def failure(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    line = _user_line(exc) if exc is not None else None
    return {"ok": False, "error_type": error_type, "message": message + (f" (line {line})" if line else "")}


_BUILTINS = guards.user_builtins()  # built once in the fork server; each child has its own copy-on-write


def _execute(request: dict[str, Any], code: CodeType) -> dict[str, Any]:
    printer = guards.CappedPrint(int(request["print_limit"]))
    try:
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


def run_in_child(
    request: dict[str, Any], code: CodeType, result_fd: int, devnull: int, base_address_space: int
) -> NoReturn:
    out_of_memory = json.dumps(failure("memory_limit", "the outputs did not fit in memory")).encode()
    try:
        _isolate(result_fd, devnull)
        _lock_down(request, base_address_space)
        try:
            payload = _encode(_execute(request, code), int(request["output_limit"]))
        except MemoryError:
            payload = out_of_memory
        view = memoryview(payload)
        while view:
            view = view[os.write(RESULT_FD, view) :]
        os.close(RESULT_FD)  # the answer is complete: the server need not wait for the exit
    finally:
        os._exit(0)
