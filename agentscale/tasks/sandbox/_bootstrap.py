"""Sandbox child bootstrap: builds the jail, drops privileges, then execs the untrusted program.

Run as ``python -I -S _bootstrap.py CONFIG.json`` (stdlib only, never imported by agentscale), either
directly (mode ``plain``) or under ``unshare --mount --net --pid --ipc --uts --fork`` (modes
``root-ns`` and ``user-ns``). The steps, in order, for the namespace modes:

1. a tmpfs becomes the new root; ``/usr``, ``/bin``, ``/lib*``, ``/sbin`` and the interpreter's prefix
   are bind-mounted read-only, plus ``/dev/{null,zero,full,random,urandom}``, a fresh ``/proc`` (of
   the new pid namespace) and ``/etc/ld.so.cache``; nothing else of the host is visible;
2. ``/work`` is a size-capped tmpfs holding the program's files; ``/tmp`` points at it;
3. every other mount is remounted read-only, then ``pivot_root`` and a lazy unmount of the old root
   make the host tree unreachable (a plain ``chroot`` could be escaped through a nested user namespace);
4. resource limits, then privileges: as real root we switch to a one-off unprivileged uid; in a user
   namespace we drop the capability bounding set and set ``SECBIT_NOROOT`` so the exec'd program has
   no capabilities (and so cannot undo the read-only mounts); ``no_new_privs`` in both;
5. write ``ok`` on the status pipe (so the parent can tell a broken sandbox from a failing program),
   re-arm the parent-death signal (a uid change clears it) and ``execve`` the program: in ``plain``
   mode in this process; in the namespace modes in a child, this process staying as the namespace's
   first one (`_run_as_init`), which ends as the program did and writes the signal that ended it.

Any failure before step 5 exits with status 125 and a message on stderr; the parent then reports a
sandbox error instead of scoring the item.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import resource
import signal
import stat
import sys
from typing import Any

SETUP_FAILED = 125

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_NOATIME = 1024
_MS_NODIRATIME = 2048
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_MS_RELATIME = 1 << 21
_MNT_DETACH = 2

_PR_SET_PDEATHSIG = 1
_PR_CAPBSET_DROP = 24
_PR_SET_SECUREBITS = 28
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
# SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE | its lock:
# uid 0 gains no capabilities on execve, and nothing can turn that back on.
_SECUREBITS = 0b11100011

_PIVOT_ROOT_SYSCALL = {
    "x86_64": 155,
    "aarch64": 41,
    "arm64": 41,
    "riscv64": 41,
    "ppc64le": 203,
    "ppc64": 203,
    "s390x": 217,
    "i686": 217,
    "i386": 217,
    "armv7l": 218,
}

_ROOT_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")
_ETC_FILES = ("ld.so.cache", "localtime")

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A jail-building step failed (the message names the step and errno)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(errno)} (errno {errno})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(
        _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
        f"mount {source} on {target}",
    )


def _prctl(option: int, arg: int, what: str) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), what)


def _preserved_flags(path: str) -> int:
    """Mount flags to keep on a read-only remount (a user namespace may not clear locked ones)."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st_flag, ms_flag in (
        (os.ST_NOSUID, _MS_NOSUID),
        (os.ST_NODEV, _MS_NODEV),
        (os.ST_NOEXEC, _MS_NOEXEC),
        (os.ST_NOATIME, _MS_NOATIME),
        (os.ST_NODIRATIME, _MS_NODIRATIME),
        (os.ST_RELATIME, _MS_RELATIME),
    ):
        if f & st_flag:
            flags |= ms_flag
    return flags


def _mount_points_under(root: str) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as handle:
        for line in handle:
            raw = line.split()[4]
            point = raw.encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
            if point == root or point.startswith(root + "/"):
                points.append(point)
    return points


def _bind(source: str, target: str, *, recursive: bool = True) -> None:
    _mount(source, target, None, _MS_BIND | (_MS_REC if recursive else 0))


def _touch(path: str) -> None:
    with open(path, "w"):
        pass


def _makedirs(root: str, path: str) -> str:
    """Create ``path`` (absolute, host-style) inside ``root``; returns the in-root path."""
    target = os.path.join(root, path.lstrip("/"))
    os.makedirs(target, mode=0o755, exist_ok=True)
    return target


def namespace_ids() -> dict[str, int]:
    """Inode numbers identifying this process's mount, network and pid namespaces."""
    return {name: os.stat(f"/proc/self/ns/{name}").st_ino for name in ("mnt", "net", "pid")}


def check_namespaces(host: dict[str, int]) -> None:
    """Refuse to touch mounts unless we really are in fresh namespaces (else we would remount the
    host's file systems and pivot the host's root)."""
    mine = namespace_ids()
    shared = [name for name in ("mnt", "net") if mine[name] == host[name]]
    if shared:
        raise SetupError(f"still in the host's {'/'.join(shared)} namespace; refusing to build the jail")
    if os.getpid() != 1:
        raise SetupError("not the first process of a new pid namespace")


def _build_root(cfg: dict[str, Any]) -> None:
    check_namespaces(cfg["host_namespaces"])
    root = cfg["new_root"]
    _mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    _mount("agentscale-root", root, "tmpfs", _MS_NOSUID | _MS_NODEV, "size=1m,mode=0755")

    for name in _ROOT_DIRS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(root, name))
        elif os.path.isdir(host):
            _bind(host, _makedirs(root, host))

    for prefix in cfg["bind_dirs"]:
        inside = os.path.join(root, prefix.lstrip("/"))
        if not os.path.isdir(inside) or not os.listdir(inside):
            _bind(prefix, _makedirs(root, prefix))

    etc = _makedirs(root, "/etc")
    for name in _ETC_FILES:
        host = "/etc/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(etc, name))
        elif os.path.isfile(host):
            _touch(os.path.join(etc, name))
            _bind(host, os.path.join(etc, name), recursive=False)

    dev = _makedirs(root, "/dev")
    for name in _DEVICES:
        if os.path.exists("/dev/" + name):
            _touch(os.path.join(dev, name))
            _bind("/dev/" + name, os.path.join(dev, name), recursive=False)
    for name, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        os.symlink(target, os.path.join(dev, name))

    _mount("proc", _makedirs(root, "/proc"), "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)

    work = _makedirs(root, "/work")
    owner = "" if cfg["uid"] is None else f",uid={cfg['uid']},gid={cfg['gid']}"
    _mount("agentscale-work", work, "tmpfs", _MS_NOSUID | _MS_NODEV, f"size={cfg['work_bytes']},mode=0700{owner}")
    _write_files(work, cfg)
    os.symlink("/work", os.path.join(root, "tmp"))

    writable = {work, os.path.join(root, "proc")}
    for point in _mount_points_under(root):
        if point in writable or any(point.startswith(w + "/") for w in writable):
            continue
        _mount(None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _preserved_flags(point))

    number = _PIVOT_ROOT_SYSCALL.get(platform.machine())
    if number is None:
        raise SetupError(f"pivot_root: unknown syscall number on {platform.machine()}")
    os.chdir(root)
    _check(_libc.syscall(number, b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", _MNT_DETACH), "detach old root")
    os.chdir("/")


def _write_files(directory: str, cfg: dict[str, Any]) -> None:
    for name, text in cfg["files"].items():
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        if cfg["uid"] is not None:
            os.chown(path, cfg["uid"], cfg["gid"])


def _set_limits(limits: dict[str, int], *, init: bool) -> None:
    """`init`: this process stays as the namespace's first one (`_run_as_init`), one of the uid's
    processes beside the program's `max_processes`."""
    for name, value in (
        ("RLIMIT_CORE", 0),
        ("RLIMIT_AS", limits["memory_bytes"]),
        ("RLIMIT_FSIZE", limits["file_size_bytes"]),
        ("RLIMIT_NOFILE", limits["open_files"]),
        ("RLIMIT_NPROC", limits["max_processes"] + init),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def _drop_capabilities() -> None:
    """Empty the bounding set and lock 'root has no special powers' for everything exec'd later."""
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, "clear ambient capabilities")
    last_cap = 40
    try:
        with open("/proc/sys/kernel/cap_last_cap") as handle:
            last_cap = int(handle.read())
    except OSError:
        pass
    for cap in range(last_cap + 1):
        _prctl(_PR_CAPBSET_DROP, cap, f"drop capability {cap}")
    _prctl(_PR_SET_SECUREBITS, _SECUREBITS, "set securebits")


def _drop_privileges(cfg: dict[str, Any]) -> None:
    if cfg["mode"] != "plain":
        _drop_capabilities()
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    _prctl(_PR_SET_NO_NEW_PRIVS, 1, "set no_new_privs")
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "set parent-death signal")


def main(config_path: str) -> None:
    """Build the jail described by the JSON config at ``config_path`` and exec the program."""
    try:
        with open(config_path, encoding="utf-8") as handle:
            cfg = json.load(handle)
        if cfg["mode"] == "plain":
            os.chdir(cfg["work_dir"])
            work = cfg["work_dir"]
        else:
            _build_root(cfg)
            work = "/work"
        _set_limits(cfg["limits"], init=cfg["mode"] != "plain")
        _drop_privileges(cfg)
        os.chdir(work)
        if cfg["mode"] != "plain" and os.access("/", os.W_OK):
            raise SetupError("root file system is still writable")
        if not stat.S_ISDIR(os.stat(".").st_mode):
            raise SetupError("work directory is missing")
        status_fd = cfg["status_fd"]
        os.write(status_fd, b"ok")
    except Exception as error:
        sys.stderr.write(f"agentscale-sandbox: setup failed: {error}\n")
        sys.stderr.flush()
        os._exit(SETUP_FAILED)
    if cfg["mode"] == "plain":  # not a namespace's first process: the program takes this one's place
        os.close(status_fd)
        os.execve(cfg["python"], cfg["argv"], cfg["env"])
    _run_as_init(cfg, status_fd)


def _run_as_init(cfg: dict[str, Any], status_fd: int) -> None:
    """As the pid namespace's first process: start the program as a child, reap whatever is orphaned
    meanwhile, and end as the program did, writing the signal that ended it (``signal N``) on the
    status pipe.

    Why not exec the program as the first process: the kernel delivers it no signal it has no handler
    for, so the soft CPU limit's SIGXCPU did nothing, the hard limit's SIGKILL a second later ended it
    and ``unshare`` could not pass that on (it exited 1 with "sigprocmask unblock failed", which the
    scorer reported as the reason), and a program's ``os.kill(os.getpid(), SIGKILL)`` went on."""
    program = os.fork()
    if program == 0:
        try:
            os.close(status_fd)
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, "set parent-death signal")  # a fork clears it
            os.execve(cfg["python"], cfg["argv"], cfg["env"])
        finally:
            os._exit(SETUP_FAILED)
    while True:
        pid, status = os.wait()
        if pid == program:
            break
    if os.WIFSIGNALED(status):
        os.write(status_fd, f"signal {os.WTERMSIG(status)}".encode())
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


if __name__ == "__main__":
    main(sys.argv[1])
