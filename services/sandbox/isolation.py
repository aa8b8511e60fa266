"""OS isolation for custom-code runs: namespaces, a read-only empty root, Landlock, seccomp, undumpable.

Contract:
- `make_undumpable()`: `PR_SET_DUMPABLE=0` for the calling process; every long-lived service
  process calls it at start, so that a process of the same (non-root) uid can neither read its
  `/proc/<pid>/environ` / `mem` nor ptrace it.
- `requested_level()` reads `CUSTOM_CODE_ISOLATION`: `auto` (default: the best level the kernel
  allows), `namespaces`, `landlock`, `none`, or `restricted-python-only` (the operator's opt-out:
  custom code runs with RestrictedPython and rlimits only). Any other value counts as `none`.
- Levels (reported by the fork server in its ready frame, `SandboxClient.isolation`):
  `namespaces+seccomp` — the template process lives in new user, mount, network, IPC and UTS
  namespaces and has `pivot_root`ed into an empty read-only tmpfs (no /etc, no /proc, no app
  source, no host /tmp, no network interface but a down loopback); each run also gets a PID
  namespace of its own (it is PID 1 there and sees no other process) and the seccomp filter below.
  `landlock+seccomp` — the fallback where the kernel refuses namespaces (Docker's default seccomp
  profile refuses `unshare(CLONE_NEWUSER)`): a Landlock domain per run that handles every
  filesystem right with no rule (no file can be opened, created or executed), on ABI ≥ 4 every
  TCP right, on ABI ≥ 6 signal and abstract-socket scoping, plus seccomp.
  `restricted-python-only` — the opt-out. `none` — no OS layer: the fork server refuses every
  run with `sandbox_unavailable` (fail closed) and says why.
- Distinct uids: when the service is root, the template's user namespace maps `SLOTS + 1` uids
  (inside 0 = outside `UID_BASE`) and each concurrent run `setuid`s to its own slot (outside
  `UID_BASE + 1 + slot`); under Landlock a root service `setuid`s each run to that host uid
  directly. When the service is not root, only its own uid can be mapped, so every run shares
  it; then the per-run PID namespace (a run cannot name another process), the empty root (no
  /proc) and seccomp (no kill, ptrace, process_vm_*, pidfd_*) keep runs apart, and under
  Landlock the signal scoping of ABI ≥ 6. Several fork servers of one root service reuse the
  same outside uids; they too are kept apart by those layers.
- `run_filter()` builds (once, in the template) the seccomp filter a run loads: default allow;
  EPERM for socket/socketpair/connect/bind/listen/accept*, ptrace, process_vm_readv/writev,
  kill/tkill/tgkill/rt_*sigqueueinfo/pidfd_*, mount and friends, pivot_root, chroot, unshare,
  setns, bpf, keyctl/add_key/request_key, perf_event_open, userfaultfd, io_uring_*, clone, fork,
  vfork, execve(at), open/name_to_handle_at, kcmp, setsid/setpgid (a run stays in the server's
  process group, so killing the group kills it), module/kexec/reboot/swap/acct calls;
  ENOSYS for clone3 (so libc falls back to the refused clone). Loading it sets
  `PR_SET_NO_NEW_PRIVS`. Syscalls of a foreign architecture kill the process (libseccomp's
  default bad-arch action).
Not covered: CPU caches and other side channels; the kernel itself (a kernel bug reachable
through the allowed syscalls); time and `getrandom`.
"""

from __future__ import annotations

import ctypes
import errno
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyseccomp import SyscallFilter  # untyped (Any): pyseccomp has no stubs

try:
    import pyseccomp
except (ImportError, OSError):  # no libseccomp: no seccomp layer
    pyseccomp = None

NAMESPACES = "namespaces+seccomp"
LANDLOCK = "landlock+seccomp"
OPT_OUT = "restricted-python-only"
NONE = "none"
REQUESTS = {"auto", "namespaces", "landlock", "none", OPT_OUT}

SLOTS = 1024  # distinct uids for concurrent runs (root service only)
UID_BASE = 1_800_000_000  # outside uids of the runs: UID_BASE + 1 + slot

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 1, 2, 4, 8
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_MNT_DETACH = 2
_NS_FLAGS = os.CLONE_NEWUSER | os.CLONE_NEWNS | os.CLONE_NEWNET | os.CLONE_NEWIPC | os.CLONE_NEWUTS

# Landlock (generic syscall numbers, the same on every architecture)
_LANDLOCK_CREATE_RULESET, _LANDLOCK_RESTRICT_SELF = 444, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def make_undumpable() -> None:
    """PR_SET_DUMPABLE=0: no core dumps; /proc/<pid>/{environ,mem} and ptrace are closed to same-uid processes."""
    _check(_libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def set_no_new_privs() -> None:
    _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def requested_level() -> str:
    value = os.environ.get("CUSTOM_CODE_ISOLATION", "auto").strip().lower() or "auto"
    return value if value in REQUESTS else f"invalid:{value}"


# --- capabilities -------------------------------------------------------------------------------


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty effective, permitted and inheritable capability sets (in whatever user namespace we are)."""
    header = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


# --- namespaces and the empty root --------------------------------------------------------------


def unshare_namespaces() -> None:
    """New user, mount, network, IPC and UTS namespaces for the calling (template) process."""
    os.unshare(_NS_FLAGS)


def id_maps(service_uid: int, service_gid: int) -> tuple[str, str]:
    """The uid_map and gid_map the service writes for the template's user namespace."""
    if service_uid == 0:
        return f"0 {UID_BASE} {SLOTS + 1}\n", f"0 {UID_BASE} {SLOTS + 1}\n"
    return f"0 {service_uid} 1\n", f"0 {service_gid} 1\n"


def write_id_maps(pid: int, service_uid: int, service_gid: int) -> None:
    uid_map, gid_map = id_maps(service_uid, service_gid)
    for name, text in (("setgroups", "deny\n"), ("uid_map", uid_map), ("gid_map", gid_map)):
        with open(f"/proc/{pid}/{name}", "w") as file:
            file.write(text)


def _mount(source: bytes | None, target: bytes, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    _check(_libc.mount(source, target, fstype, ctypes.c_ulong(flags), data), f"mount {target.decode()}")


def enter_empty_root() -> None:
    """Become root of the new user namespace and pivot_root into an empty read-only tmpfs."""
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)
    _mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None)
    target = next(d for d in ("/tmp", "/mnt", "/var/tmp", "/dev") if os.path.isdir(d))
    _mount(b"tmpfs", target.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, b"size=64k,mode=0555")
    os.mkdir(f"{target}/old", 0o000)
    os.chdir(target)
    pivot_root = pyseccomp.resolve_syscall(pyseccomp.system_arch(), "pivot_root") if pyseccomp else 155
    _check(_libc.syscall(pivot_root, b".", b"old"), "pivot_root")
    _check(_libc.umount2(b"/old", _MNT_DETACH), "umount2 /old")
    os.rmdir("/old")
    flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _mount(None, b"/", None, flags, None)
    os.chdir("/")


# --- Landlock -----------------------------------------------------------------------------------


def landlock_abi() -> int:
    """The Landlock ABI version of the kernel, 0 if Landlock is unavailable."""
    result: int = _libc.syscall(_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), _LANDLOCK_CREATE_RULESET_VERSION)
    return max(result, 0)


def landlock_ruleset(abi: int) -> int:
    """A ruleset fd handling every right the ABI knows, with no rule: nothing is allowed."""
    attr = _RulesetAttr(_FS_RIGHTS_BY_ABI[min(abi, 5)], 0b11 if abi >= 4 else 0, 0b11 if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 16 if abi >= 4 else 8
    return _check(_libc.syscall(_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), 0), "landlock")


def landlock_restrict(ruleset_fd: int) -> None:
    """Enter the ruleset's domain (needs PR_SET_NO_NEW_PRIVS first)."""
    _check(_libc.syscall(_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0), "landlock_restrict_self")


# --- seccomp ------------------------------------------------------------------------------------

DENIED = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo",
    "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "move_mount", "open_tree", "fsopen", "fsmount", "fspick", "fsconfig", "mount_setattr",
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "clone", "fork", "vfork", "execve", "execveat",
    "open_by_handle_at", "name_to_handle_at", "setsid", "setpgid",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "acct", "quotactl", "personality", "ioperm", "iopl", "lookup_dcookie",
)  # fmt: skip


@dataclass
class Layers:
    """What a run's process applies to itself, prepared once in the template."""

    level: str
    seccomp: SyscallFilter | None = None
    landlock_fd: int | None = None
    namespaces: bool = False
    notes: list[str] = field(default_factory=list)


def run_filter() -> object:
    assert pyseccomp is not None
    syscall_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    arch = pyseccomp.system_arch()
    for name in DENIED:
        try:
            number = pyseccomp.resolve_syscall(arch, name)
        except (ValueError, OSError):
            continue
        if number >= 0:  # names the architecture lacks (fork on arm64) resolve negative: skip them
            syscall_filter.add_rule(pyseccomp.ERRNO(errno.EPERM), number)
    syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    return syscall_filter


def seccomp_available() -> str | None:
    """None if a seccomp filter can be built here, else why not."""
    if pyseccomp is None:
        return "libseccomp/pyseccomp is not available"
    try:
        run_filter()
    except Exception as exc:
        return f"seccomp filter: {exc}"
    return None
