"""What happens inside one forked child: limits first, then the user's code, then one answer.

Contract: `run_in_child(request, result_fd)` never returns: it writes one JSON answer
(`{"ok": true, "outputs", "printed"}` or `{"ok": false, "error_type", "message"}`) to
`result_fd` and exits with `os._exit`. Limits are set before any user code runs: address space
(the fork server's own size plus `memory_mb`), CPU seconds, no file writes (FSIZE 0), few open
files, no new processes, a recursion limit.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import traceback
from typing import Any, NoReturn

from services.sandbox import policy

FILENAME = "<custom_code>"


def _set_limits(request: dict[str, Any], base_address_space: int) -> None:
    memory = base_address_space + int(request["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = int(request["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.setrecursionlimit(int(request.get("recursion_limit", 400)))


def _user_line(exc: BaseException) -> int | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    return frames[-1].lineno if frames else None


def _failure(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    line = _user_line(exc) if exc is not None else None
    where = f" (line {line})" if line else ""
    return {"ok": False, "error_type": error_type, "message": f"{message}{where}"}


def _execute(request: dict[str, Any]) -> dict[str, Any]:
    printer = policy.install_printer(int(request["print_limit"]))
    try:
        code = policy.compile_user_code(request["code"], FILENAME)
        namespace = policy.restricted_globals(int(request["print_limit"]))
        exec(code, namespace)
        outputs = policy.entry(namespace, request["inputs"])
    except policy.CodeRejected as exc:
        return _failure("code_error", exc.message)
    except MemoryError as exc:
        return _failure("memory_limit", f"the code used more than {request['memory_mb']} MB", exc)
    except RecursionError as exc:
        return _failure("recursion_limit", "the code recursed too deeply", exc)
    except policy.PrintLimitExceeded as exc:
        return _failure("output_too_large", str(exc), exc)
    except (ImportError, NotImplementedError) as exc:
        return _failure("forbidden", str(exc), exc)
    except Exception as exc:
        return _failure("code_error", f"{type(exc).__name__}: {exc}", exc)
    if not isinstance(outputs, dict):
        return _failure("code_error", f"main() must return a dict of outputs, got {type(outputs).__name__}")
    return {"ok": True, "outputs": outputs, "printed": printer()}


def run_in_child(request: dict[str, Any], result_fd: int, base_address_space: int) -> NoReturn:
    try:
        _set_limits(request, base_address_space)
        answer = _execute(request)
        try:
            payload = json.dumps(answer, allow_nan=False)
        except (TypeError, ValueError) as exc:
            payload = json.dumps(_failure("code_error", f"outputs must be JSON: {exc}"))
        except MemoryError:
            payload = json.dumps(_failure("memory_limit", "the outputs did not fit in memory"))
        if len(payload) > int(request["output_limit"]):
            payload = json.dumps(_failure("output_too_large", f"outputs over {request['output_limit']} bytes"))
        data = payload.encode()
        view = memoryview(data)
        while view:
            written = os.write(result_fd, view)
            view = view[written:]
    finally:
        os._exit(0)
