"""The memory and CPU time a container (a cgroup) grants this process, which /proc does not show.

Why: inside Docker or Kubernetes, /proc/meminfo and ``os.sched_getaffinity`` describe the host. A
container limited to 8 GiB on a 256 GiB host reads 200 GiB available, sizes a vLLM-CPU KV cache
from it and passes the memory check, and the kernel kills the server instead; ``--cpus 2`` on a
64-core host leaves all 64 cores in the affinity mask, so vLLM starts 63 compute threads that the
CPU quota throttles to two cores' worth of time. The limits live in the cgroup filesystem: v2
(``memory.max``, ``cpu.max``) or v1 (``memory.limit_in_bytes``, ``cpu.cfs_quota_us``), on this
process's cgroup or any ancestor, so the tightest along the path applies.

Everything here reads files only and returns ``None`` where a limit is absent or unreadable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

_ROOT = Path("/")
_Limit = TypeVar("_Limit", int, float)
# cgroup v1 writes "no limit" as the largest page-aligned 64-bit value; anything at or above 2**62
# is no limit a machine could honour
_V1_UNLIMITED = 2**62


@dataclass(frozen=True)
class _Hierarchy:
    """One mounted cgroup hierarchy this process belongs to: where its cgroup's folder is."""

    version: int  # 1 or 2
    folder: Path  # this process's cgroup folder (the mount point when it cannot be located)
    mount_point: Path


def memory_headroom_bytes(root: Path = _ROOT) -> int | None:
    """Bytes this process's cgroup may still take: its tightest memory limit minus what the cgroup
    holds, its inactive page cache not counted (the working set Kubernetes and `docker stats` count;
    active page cache is reclaimable too, so this errs on the side of refusing); ``None`` without a
    limit. ``root`` is where /proc and /sys are found (a test's fake tree)."""
    headroom = _tightest(root, "memory", _memory_headroom)
    return None if headroom is None else max(0, headroom)


def cpu_quota(root: Path = _ROOT) -> float | None:
    """CPUs' worth of time per period the cgroup grants (``--cpus 1.5`` gives 1.5); ``None``
    without a quota."""
    return _tightest(root, "cpu", _cpu_quota)


def _tightest(root: Path, controller: str, read: Callable[[Path, int], _Limit | None]) -> _Limit | None:
    """The least of ``read``'s limits over this process's cgroup folders of ``controller`` and their
    ancestors (a parent's limit binds too), or ``None`` where none sets one."""
    limits = [
        limit
        for hierarchy in _hierarchies(root, controller)
        for folder in _up_to_mount(hierarchy)
        if (limit := read(folder, hierarchy.version)) is not None
    ]
    return min(limits) if limits else None


def _hierarchies(root: Path, controller: str) -> list[_Hierarchy]:
    """The mounted hierarchies holding ``controller`` (v1) or the unified one (v2), each with this
    process's folder in it, from /proc/self/mountinfo and /proc/self/cgroup."""
    mounts = _read(root / "proc/self/mountinfo")
    memberships = _read(root / "proc/self/cgroup")
    if mounts is None or memberships is None:
        return []
    paths: dict[str, str] = {}  # "" for v2, else the v1 controller -> the cgroup path
    for line in memberships.splitlines():
        _, _, rest = line.partition(":")
        names, _, path = rest.partition(":")
        for name in names.split(",") if names else [""]:
            paths[name] = path
    found: list[_Hierarchy] = []
    for line in mounts.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:  # id, parent, device, root, mount point, ...
            continue
        mount_root, mount_point = fields[3], fields[4]
        described = line.split(" - ", 1)[1].split()  # the filesystem type, its source, its options
        if len(described) < 3:
            continue
        fs_type, super_options = described[0], described[2]
        if fs_type == "cgroup2" and "" in paths:
            version, path = 2, paths[""]
        elif fs_type == "cgroup" and controller in super_options.split(",") and controller in paths:
            version, path = 1, paths[controller]
        else:
            continue
        mount = root / _decoded(mount_point).lstrip("/")
        found.append(_Hierarchy(version, _folder_of(mount, _decoded(mount_root), path), mount))
    return found


def _folder_of(mount: Path, mount_root: str, cgroup_path: str) -> Path:
    """This process's cgroup folder under ``mount``: the path relative to the mount's root, or the
    mount itself where that folder is not visible (a container whose cgroup namespace hides the
    host's path, whose own limits then sit at the mount)."""
    if cgroup_path.startswith(mount_root):
        relative = cgroup_path[len(mount_root) :].strip("/")
        folder = mount / relative if relative else mount
        if folder.is_dir():
            return folder
    return mount


def _up_to_mount(hierarchy: _Hierarchy) -> list[Path]:
    """The cgroup's folder and each ancestor up to the mount point: a parent's limit binds too."""
    folders = [hierarchy.folder]
    while folders[-1] != hierarchy.mount_point and hierarchy.mount_point in folders[-1].parents:
        folders.append(folders[-1].parent)
    return folders


def _memory_headroom(folder: Path, version: int) -> int | None:
    names = ("memory.max", "memory.current") if version == 2 else ("memory.limit_in_bytes", "memory.usage_in_bytes")
    limit, used = _read_int(folder / names[0]), _read_int(folder / names[1])
    if limit is None or limit >= _V1_UNLIMITED:
        return None
    droppable = _stat(folder / "memory.stat", "inactive_file" if version == 2 else "total_inactive_file")
    return limit - max(0, (used or 0) - (droppable or 0))


def _cpu_quota(folder: Path, version: int) -> float | None:
    if version == 2:
        text = _read(folder / "cpu.max")
        parts = text.split() if text else []
        if len(parts) != 2 or parts[0] == "max":
            return None
        quota, period = _int(parts[0]), _int(parts[1])
    else:
        quota, period = _read_int(folder / "cpu.cfs_quota_us"), _read_int(folder / "cpu.cfs_period_us")
    if quota is None or period is None or quota <= 0 or period <= 0:  # v1 writes -1 for no quota
        return None
    return quota / period


def _stat(path: Path, key: str) -> int | None:
    for line in (_read(path) or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return _int(value)
    return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    return None if text is None or text.strip() == "max" else _int(text)


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _decoded(field: str) -> str:
    r"""A mountinfo path field: blanks and backslashes are written as octal escapes (\040)."""
    for escape, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escape, char)
    return field
