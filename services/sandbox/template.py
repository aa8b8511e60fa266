"""The clean template: the process every run is forked from, isolated once, holding no run's data.

Contract: `serve_template(sock, devnull, level_request, unrestricted)` never returns. It runs in
the fork server's first process right after every module the runs need is imported; the broker
(`forkserver.Broker`) has been forked off before and alone reads requests, so the template never
holds any run's code or inputs, nor does any run forked from it.

Start-up handshake on `sock` (a SOCK_SEQPACKET pair with the broker, JSON packets):
- namespaces wanted: template `unshare`s user/mount/net/IPC/UTS and sends `{"unshared": true}`;
  the broker writes its uid/gid maps (`isolation.write_id_maps`: only a process outside the new
  user namespace can map a uid range) and answers `{"mapped": true}`; the template pivots into
  the empty read-only root. If the kernel refuses `unshare`, `auto` falls back to Landlock.
- then `{"level", "layers", "log"}`: the active level (`isolation`), what each run will apply,
  and a few lines on what was tried.
Then, per `{"spawn": token, "slot": n}` the template forks a helper that (with namespaces) enters
a new PID namespace and forks the run's process (`child.serve_run`, PID 1 there), then sends the
broker `{"spawned": token, "pid"}` with three fds (SCM_RIGHTS): the write end of the run's request
pipe, the read end of its answer pipe and a pidfd of the run's process, waits for the run, sends
`{"exited": token, "status"}` and exits. The template reaps helpers automatically (SIGCHLD
ignored). When the broker's end closes, the template SIGKILLs its process group (itself, the
helpers and every run: runs cannot leave the group) and so ends.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any, NoReturn

from services.sandbox import child, isolation

_SLACK = 8 * 1024 * 1024  # what the template allocates after measuring (filter, ruleset, buffers)


def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def _receive(sock: socket.socket) -> dict[str, Any] | None:
    data = sock.recv(1 << 16)
    return json.loads(data) if data else None


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def _try_namespaces(sock: socket.socket, log: list[str]) -> bool:
    try:
        isolation.unshare_namespaces()
    except OSError as exc:
        log.append(f"namespaces refused by the kernel: {exc}")
        return False
    _send(sock, {"unshared": True})
    answer = _receive(sock)
    if not answer or not answer.get("mapped"):
        raise OSError(f"the broker could not map uids: {answer and answer.get('error')}")
    isolation.enter_empty_root()
    log.append("namespaces: user, mount, net, ipc, uts; per run pid; root = empty read-only tmpfs")
    return True


def _set_up(sock: socket.socket, request: str, log: list[str]) -> isolation.Layers:
    """Isolate the template as far as the request and the kernel allow; the layers runs apply."""
    if request == isolation.OPT_OUT:
        log.append("restricted-python-only: the operator opted out of OS isolation")
        return isolation.Layers(isolation.OPT_OUT)
    if request not in ("auto", "namespaces", "landlock"):
        log.append(f"CUSTOM_CODE_ISOLATION={request}: no OS isolation, custom code is refused")
        return isolation.Layers(isolation.NONE)
    problem = isolation.seccomp_available()
    if problem:
        log.append(f"no seccomp ({problem}): custom code is refused")
        return isolation.Layers(isolation.NONE)
    abi = isolation.landlock_abi()
    log.append(f"landlock ABI {abi}" if abi else "landlock unavailable")
    landlock_fd = isolation.landlock_ruleset(abi) if abi else None
    if request in ("auto", "namespaces") and _try_namespaces(sock, log):
        layers = isolation.Layers(isolation.NAMESPACES, namespaces=True, landlock_fd=landlock_fd)
    elif request in ("auto", "landlock") and landlock_fd is not None:
        layers = isolation.Layers(isolation.LANDLOCK, landlock_fd=landlock_fd)
    else:
        log.append(f"{request}: not available here, custom code is refused")
        return isolation.Layers(isolation.NONE)
    layers.seccomp = isolation.run_filter()
    layers.notes = ["seccomp", *(["landlock"] if landlock_fd is not None else []), "rlimits"]
    if layers.namespaces:
        layers.notes[:0] = ["user+mount+net+ipc+uts namespaces", "pid namespace per run", "empty read-only root"]
    return layers


def _helper(sock: socket.socket, plan: child.Plan, token: int, devnull: int) -> NoReturn:
    """Between the template and one run: new PID namespace, fork the run, hand its fds over, report its end."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if plan.layers.namespaces:
            os.unshare(os.CLONE_NEWPID)
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            sock.close()
            os.close(request_write)
            os.close(answer_read)
            child.serve_run(plan, request_read, answer_write, devnull)
        os.close(request_read)
        os.close(answer_write)
        pidfd = os.pidfd_open(pid)
        _send(sock, {"spawned": token, "pid": pid}, [request_write, answer_read, pidfd])
        for fd in (request_write, answer_read, pidfd):
            os.close(fd)
        status = os.waitpid(pid, 0)[1]
        _send(sock, {"exited": token, "status": status})
    except BaseException as exc:
        try:
            _send(sock, {"failed": token, "error": f"{type(exc).__name__}: {exc}"})
        except OSError:
            pass
    finally:
        os._exit(0)


def serve_template(sock: socket.socket, devnull: int, level_request: str, unrestricted: bool) -> NoReturn:
    log: list[str] = []
    base = _address_space() + _SLACK  # measured while /proc is still there
    service_root = os.getuid() == 0  # before any user namespace
    try:
        layers = _set_up(sock, level_request, log)
    except Exception as exc:  # a half-made namespace: refuse custom code rather than run it half-isolated
        log.append(f"isolation set-up failed: {type(exc).__name__}: {exc}")
        layers = isolation.Layers(isolation.NONE)
    isolation.make_undumpable()
    _send(sock, {"level": layers.level, "layers": layers.notes, "log": log})
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # helpers are reaped by the kernel
    try:
        while (message := _receive(sock)) is not None:
            plan = child.Plan(layers, int(message["slot"]), service_root, base, unrestricted)
            if os.fork() == 0:
                _helper(sock, plan, int(message["spawn"]), devnull)
    finally:
        os.killpg(0, signal.SIGKILL)
        os._exit(1)
