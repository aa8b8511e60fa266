"""The OS layer on its own: plain Python in an isolated run (as if RestrictedPython were broken).

Every test runs against fork servers started as root and as the service's uid (10001), at the
best level (`namespaces+seccomp` here) and at the forced fallback (`landlock+seccomp`). A run
tries to read host files, write anywhere, open sockets, signal or inspect other processes and
find another run's data; each attempt must fail. A control with `restricted-python-only` shows
the same attempts succeed without the OS layer, so the assertions are not vacuous.
"""

import asyncio
import os
import socket
import subprocess
import textwrap

import psutil
import pytest

from engine.errors import ElementError
from services.sandbox.client import PROJECT_ROOT
from tests.fixtures.sandbox import SERVICE_UID, isolated_client, python_as, run_unrestricted, wait_for_busy_runs

SERVERS = [
    pytest.param(False, "auto", id="root-namespaces"),
    pytest.param(True, "auto", id="service-namespaces"),
    pytest.param(False, "landlock", id="root-landlock"),
    pytest.param(True, "landlock", id="service-landlock"),
]
EXPECTED_LEVEL = {"auto": "namespaces+seccomp", "landlock": "landlock+seccomp"}

ATTEMPTS = """
import ctypes, gc, os, socket
def attempt(name, action):
    try:
        value = action()
        results[name] = "allowed" if value is None else f"allowed: {value!r}"[:200]
    except BaseException as exc:
        results[name] = type(exc).__name__
results = {}
for index, path in enumerate(inputs["read"]):
    attempt(f"read {path}", lambda: open(path, "rb").read())
    attempt(f"listdir {os.path.dirname(path)}", lambda: os.listdir(os.path.dirname(path)))
attempt("create in world dir", lambda: open(inputs["world"] + "/created", "w").write("x"))
attempt("create in /tmp", lambda: open("/tmp/sandbox-created-" + str(os.getpid()), "w").write("x"))
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
def mmap_write():  # through libc: no module to import in an empty root
    fd = os.open(inputs["writable"], os.O_RDWR)
    region = libc.mmap(None, 4096, 3, 1, fd, 0)  # PROT_READ|PROT_WRITE, MAP_SHARED
    ctypes.memmove(region, b"PWNED", 5)
    libc.msync(ctypes.c_void_p(region), 4096, 4)
attempt("mmap write", mmap_write)
attempt("tcp connect", lambda: socket.create_connection(("127.0.0.1", inputs["port"]), timeout=1))
attempt("udp send", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", inputs["port"])))
attempt("unix socket", lambda: socket.socket(socket.AF_UNIX).connect(inputs["world"] + "/unix.sock"))
def raw_socket():
    fd = libc.syscall(41, 2, 1, 0)  # socket(AF_INET, SOCK_STREAM) on x86_64, bypassing Python
    if fd < 0:
        raise OSError(ctypes.get_errno(), "socket")
    return fd
attempt("raw socket syscall", raw_socket)
for pid in inputs["pids"]:
    attempt(f"signal {pid}", lambda: os.kill(pid, 0))
    attempt(f"environ of {pid}", lambda: open(f"/proc/{pid}/environ", "rb").read())
    attempt(f"mem of {pid}", lambda: open(f"/proc/{pid}/mem", "rb").read(1))
attempt("signal own group", lambda: os.kill(0, 0))
attempt("fork", os.fork)
def ptrace():
    if libc.ptrace(16, inputs["pids"][0], 0, 0) != 0:  # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
attempt("ptrace", ptrace)
attempt("proc listing", lambda: os.listdir("/proc"))
secret = inputs["secret_hint"] + "-held-by-another-run"
found = [o for o in gc.get_objects() if isinstance(o, str) and secret in o and o is not secret]
found += [o for o in gc.get_objects() if isinstance(o, dict) for v in o.values() if isinstance(v, str) and secret in v and v is not secret]
results["secret seen"] = bool(found)
results["uid"] = os.getuid()
outputs = results
"""


def _listener() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    return server


async def _concurrent_secret_run(client, hint: str) -> asyncio.Task:
    code = "def main(inputs):\n    secret = inputs['s']\n    while True:\n        pass"
    task = asyncio.create_task(
        client.run(code, {"s": hint + "-held-by-another-run"}, memory_mb=100, cpu_seconds=20, timeout=20)
    )
    await wait_for_busy_runs(client.server_pid)  # it holds its secret now (spare runs hold nothing)
    return task


async def _attack(client, world_dir, tmp_path):
    secret_file = world_dir / "secret.txt"
    secret_file.write_text("top-secret-canary")
    secret_file.chmod(0o644)
    writable = world_dir / "writable.bin"
    writable.write_bytes(b"clean" * 100)
    writable.chmod(0o666)
    listener = _listener()
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(world_dir / "unix.sock"))
    unix.listen(1)
    os.chmod(world_dir / "unix.sock", 0o777)
    await client.start()
    other = await _concurrent_secret_run(client, "canary-7f3a")
    server = psutil.Process(client.server_pid)
    concurrent = [p.pid for p in server.children(recursive=True)]
    inputs = {
        "read": ["/etc/passwd", "/etc/hostname", f"{PROJECT_ROOT}/services/sandbox/client.py", str(secret_file)],
        "world": str(world_dir),
        "writable": str(writable),
        "port": listener.getsockname()[1],
        "pids": [os.getpid(), client.server_pid, *concurrent],
        "secret_hint": "canary-7f3a",
    }
    try:
        results = await run_unrestricted(client, ATTEMPTS, inputs, memory_mb=200, timeout=20, cpu_seconds=10)
        with pytest.raises(BlockingIOError):
            listener.accept()  # no connection ever reached the listener
        assert other.done() is False  # the concurrent run was not killed
        return results, concurrent
    finally:
        other.cancel()
        await asyncio.gather(other, return_exceptions=True)
        listener.close()
        unix.close()
        assert writable.read_bytes() == b"clean" * 100
        assert not (world_dir / "created").exists()


@pytest.mark.parametrize(("as_service", "level"), SERVERS)
async def test_a_run_with_plain_python_reaches_nothing(tmp_path, world_dir, as_service, level):
    client = isolated_client(tmp_path, as_service, level)
    try:
        results, concurrent = await _attack(client, world_dir, tmp_path)
        assert client.isolation == EXPECTED_LEVEL[level]
    finally:
        await client.aclose()
    allowed = {name: value for name, value in results.items() if str(value).startswith("allowed")}
    assert allowed == {}, allowed
    assert results["secret seen"] is False
    assert "top-secret-canary" not in repr(results)
    assert len(concurrent) >= 1 and all(f"signal {pid}" in results for pid in concurrent)


async def test_the_attack_is_not_vacuous_without_the_os_layer(tmp_path, world_dir):
    """Control: with `restricted-python-only` the same plain Python reads, writes and connects."""
    client = isolated_client(tmp_path, True, "restricted-python-only")
    listener = _listener()
    try:
        await client.start()
        assert client.isolation == "restricted-python-only"
        (world_dir / "secret.txt").write_text("top-secret-canary")
        (world_dir / "secret.txt").chmod(0o644)
        code = (
            "import socket\n"
            "socket.create_connection(('127.0.0.1', inputs['port']), timeout=2).close()\n"
            "outputs = {'read': open(inputs['secret']).read(), 'passwd': len(open('/etc/passwd').read())}"
        )
        out = await run_unrestricted(
            client, code, {"port": listener.getsockname()[1], "secret": str(world_dir / "secret.txt")}
        )
        assert out["read"] == "top-secret-canary" and out["passwd"] > 0
        listener.setblocking(True)
        listener.settimeout(2)
        listener.accept()[0].close()
    finally:
        listener.close()
        await client.aclose()


@pytest.mark.parametrize(("as_service", "level"), SERVERS)
async def test_concurrent_runs_get_distinct_uids_when_the_service_is_root(tmp_path, as_service, level):
    client = isolated_client(tmp_path, as_service, level)
    code = "import os, time\ntime.sleep(0.5)\noutputs = {'uid': os.getuid(), 'pid': os.getpid()}"
    try:
        results = await asyncio.gather(*(run_unrestricted(client, code) for _ in range(4)))
    finally:
        await client.aclose()
    uids = {r["uid"] for r in results}
    if as_service:
        assert len(uids) == 1  # one uid can be mapped: PID namespaces, seccomp and Landlock keep runs apart
    else:
        assert len(uids) == 4 and 0 not in uids
    if level == "auto":
        assert {r["pid"] for r in results} == {1}  # each run is PID 1 of a PID namespace of its own


@pytest.mark.parametrize("as_service", [False, True], ids=["root", "service"])
async def test_forced_none_fails_closed_and_the_opt_out_runs(tmp_path, as_service):
    client = isolated_client(tmp_path, as_service, "none")
    try:
        with pytest.raises(ElementError) as raised:
            await client.run("outputs = {}", {}, memory_mb=100, cpu_seconds=2, timeout=5)
        assert raised.value.error_type == "sandbox_unavailable" and "CUSTOM_CODE_ISOLATION=none" in raised.value.message
        assert client.isolation == "none"
    finally:
        await client.aclose()
    client = isolated_client(tmp_path, as_service, "restricted-python-only")
    try:
        result = await client.run("outputs = {'ok': 1}", {}, memory_mb=100, cpu_seconds=2, timeout=5)
        assert result["outputs"] == {"ok": 1} and client.isolation == "restricted-python-only"
    finally:
        await client.aclose()


async def test_an_unknown_isolation_value_fails_closed(tmp_path):
    client = isolated_client(tmp_path, False, "maybe")
    try:
        with pytest.raises(ElementError) as raised:
            await client.run("outputs = {}", {}, memory_mb=100, cpu_seconds=2, timeout=5)
        assert raised.value.error_type == "sandbox_unavailable"
    finally:
        await client.aclose()


async def test_the_unrestricted_entry_is_refused_by_a_production_server(sandbox):
    """Without the test-only variable the marker is only a comment: RestrictedPython still applies."""
    with pytest.raises(ElementError) as raised:
        await sandbox.run("#!unrestricted\nimport os\noutputs = {}", {}, memory_mb=100, cpu_seconds=2, timeout=5)
    assert raised.value.error_type == "forbidden"


_TARGET = """
import os, sys, time
if sys.argv[1] == "undumpable":
    from services.sandbox.isolation import make_undumpable
    make_undumpable()
print("ready", flush=True)
time.sleep(30)
"""
_READER = """
import sys
try:
    open(f"/proc/{sys.argv[1]}/environ", "rb").read()
    print("read")
except OSError as exc:
    print(type(exc).__name__)
"""


@pytest.mark.parametrize("mode", ["undumpable", "control"])
def test_make_undumpable_hides_environ_from_the_same_uid(tmp_path, mode):
    if os.getuid() != 0:
        pytest.skip("needs root to run two processes as another uid")
    launcher = python_as(tmp_path, SERVICE_UID, {"PYTHONPATH": PROJECT_ROOT, "CANARY": "undumpable-canary"})
    target = subprocess.Popen([launcher, "-c", textwrap.dedent(_TARGET), mode], stdout=subprocess.PIPE, text=True)
    try:
        assert target.stdout.readline().strip() == "ready"
        pid = target.pid
        done = subprocess.run([launcher, "-c", _READER, str(pid)], capture_output=True, text=True, timeout=30)
        assert done.stdout.strip() == ("PermissionError" if mode == "undumpable" else "read"), done.stderr
    finally:
        target.kill()
        target.wait()
        target.stdout.close()
