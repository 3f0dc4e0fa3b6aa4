"""A container's memory limit and CPU quota, read from cgroup files: fake v1 and v2 trees, and a real
cgroup made for a child process where this machine lets the test make one."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale.models.serving.container import cpu_quota, memory_headroom_bytes
from agentscale.models.serving.engine import (
    CPU_BIND_ENV,
    KV_CACHE_ENV,
    RESERVED_CPU_ENV,
    CpuShare,
    VllmLaunchConfig,
    build_launch,
    quota_slice,
    read_mem_available_bytes,
)

GIB = 2**30
V1_UNLIMITED = 9223372036854771712


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _v2_tree(root: Path, cgroup: str, folders: dict[str, dict[str, str]]) -> None:
    """/proc/self files naming a unified (v2) hierarchy at /sys/fs/cgroup, and its folders' files."""
    _write(
        root,
        {
            "proc/self/mountinfo": "22 1 0:21 / /proc rw - proc proc rw\n"
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            "proc/self/cgroup": f"0::{cgroup}\n",
        },
    )
    for folder, files in folders.items():
        _write(root / "sys/fs/cgroup" / folder.strip("/"), files)


def test_v2_headroom_is_the_tightest_limit_along_the_path_less_what_cannot_be_dropped(tmp_path: Path) -> None:
    _v2_tree(
        tmp_path,
        "/kubepods/pod1/box",
        {
            "kubepods/pod1/box": {
                "memory.max": str(8 * GIB),
                "memory.current": str(3 * GIB),
                "memory.stat": f"anon 100\ninactive_file {GIB}\nactive_file 5\n",
            },
            # the pod's limit binds its containers too: 4 GiB, of which 2 GiB is held (1 droppable)
            "kubepods/pod1": {
                "memory.max": str(4 * GIB),
                "memory.current": str(3 * GIB),
                "memory.stat": f"inactive_file {GIB}\n",
            },
            "kubepods": {"memory.max": "max", "memory.current": str(40 * GIB)},
        },
    )
    assert memory_headroom_bytes(tmp_path) == 2 * GIB
    assert cpu_quota(tmp_path) is None  # no cpu.max anywhere


def test_v2_cpu_quota_and_no_limits(tmp_path: Path) -> None:
    _v2_tree(
        tmp_path,
        "/box",
        {"box": {"cpu.max": "150000 100000\n", "memory.max": "max\n"}, "": {"cpu.max": "max 100000\n"}},
    )
    assert cpu_quota(tmp_path) == 1.5
    assert memory_headroom_bytes(tmp_path) is None


def test_a_namespaced_container_finds_its_limits_at_the_mount(tmp_path: Path) -> None:
    """Docker with a cgroup namespace: /proc/self/cgroup says "/" (or a host path that is not mounted
    here), and the container's own files sit at /sys/fs/cgroup."""
    for cgroup in ("/", "/system.slice/docker-0123.scope"):
        _v2_tree(
            tmp_path, cgroup, {"": {"memory.max": str(6 * GIB), "memory.current": str(GIB), "cpu.max": "200000 100000"}}
        )
        assert memory_headroom_bytes(tmp_path) == 5 * GIB
        assert cpu_quota(tmp_path) == 2.0


def test_v1_hierarchies_per_controller(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "proc/self/mountinfo": "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
            "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n",
            "proc/self/cgroup": "9:name=systemd:/box\n4:memory:/box\n2:cpu,cpuacct:/box\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{V1_UNLIMITED}\n",
            "sys/fs/cgroup/memory/box/memory.limit_in_bytes": f"{3 * GIB}\n",
            "sys/fs/cgroup/memory/box/memory.usage_in_bytes": f"{2 * GIB}\n",
            "sys/fs/cgroup/memory/box/memory.stat": f"cache 9\ninactive_file 1\ntotal_inactive_file {GIB}\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us": "50000\n",
            "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_period_us": "100000\n",
        },
    )
    assert memory_headroom_bytes(tmp_path) == 2 * GIB
    assert cpu_quota(tmp_path) == 0.5
    _write(
        tmp_path,
        {
            "sys/fs/cgroup/memory/box/memory.limit_in_bytes": f"{V1_UNLIMITED}\n",
            "sys/fs/cgroup/cpu,cpuacct/box/cpu.cfs_quota_us": "-1\n",
        },
    )
    assert memory_headroom_bytes(tmp_path) is None
    assert cpu_quota(tmp_path) is None


def test_a_mount_point_with_a_blank_and_a_machine_without_cgroups(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "proc/self/mountinfo": r"30 25 0:26 / /sys/fs/my\040cgroup rw - cgroup2 cgroup2 rw" + "\n",
            "proc/self/cgroup": "0::/\n",
            "sys/fs/my cgroup/cpu.max": "100000 100000\n",
        },
    )
    assert cpu_quota(tmp_path) == 1.0
    assert memory_headroom_bytes(tmp_path / "nowhere") is None
    assert cpu_quota(tmp_path / "nowhere") is None


def test_a_quota_binds_the_server_to_the_cpus_it_pays_for() -> None:
    config = VllmLaunchConfig(model="m", port=1)
    env = build_launch(config, environ={}, mem_available_bytes=GIB, cpus=CpuShare((4, 5), narrowed=True))[1]
    assert env[CPU_BIND_ENV] == "4-5" and RESERVED_CPU_ENV not in env  # two: both compute
    env = build_launch(config, environ={}, mem_available_bytes=GIB, cpus=CpuShare((0, 1, 2, 3), narrowed=True))[1]
    assert env[CPU_BIND_ENV] == "0-2"  # above two, one left to the rest of the server
    for mine in ({CPU_BIND_ENV: "7"}, {RESERVED_CPU_ENV: "1"}):  # the user's binding or reservation stands
        env = build_launch(config, environ=mine, mem_available_bytes=GIB, cpus=CpuShare((0, 1), narrowed=True))[1]
        assert not {CPU_BIND_ENV, RESERVED_CPU_ENV} & env.keys()
    assert CPU_BIND_ENV not in build_launch(config, environ={}, mem_available_bytes=GIB, cpus=CpuShare((0, 1, 2, 3)))[1]


def test_containers_with_a_quota_take_different_cores() -> None:
    """The first N CPUs pinned every container of a node with a quota but no cpuset to the same ones."""
    cpus = list(range(64))
    slices = {quota_slice(cpus, 2, f"pod-{i}") for i in range(20)}
    assert len(slices) > 10  # spread over the node
    for chosen in slices:  # two neighbours, or the last and the first
        assert len(chosen) == 2 and (chosen[1] - chosen[0]) % 63 in (0, 1)
    assert quota_slice(cpus, 2, "pod-1") == quota_slice(cpus, 2, "pod-1")  # the same across restarts
    assert quota_slice([4, 9], 2, "pod-1") == (4, 9) and len(quota_slice([3], 1, "x")) == 1


# ------------------------------------------------------------------- a real cgroup, where one can be made

CHILD_IN_A_CGROUP = """
import json, os, sys
for procs in sys.argv[1:]:
    with open(procs, "w") as f:
        f.write(str(os.getpid()))
from agentscale.models.serving.engine import VllmLaunchConfig, available_memory_bytes, build_launch, cpu_share
share = cpu_share()
env = build_launch(VllmLaunchConfig(model="m", port=1), environ={})[1]
print(json.dumps({"available": available_memory_bytes(), "ids": share.ids, "narrowed": share.narrowed, "env": env}))
"""


@contextlib.contextmanager
def _made_cgroups(limit_bytes: int) -> Iterator[list[Path]]:
    """Folders of a new cgroup (v1: one per controller; v2: one) limiting memory to ``limit_bytes``
    and CPU time to half a CPU, or nothing where this process may not make one."""
    name = f"agentscale-test-{uuid.uuid4().hex[:8]}"
    v1 = {"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu")}
    v2 = Path("/sys/fs/cgroup")
    made: list[Path] = []
    try:
        if all((mount / "cgroup.procs").exists() for mount in v1.values()):
            made = [v1["memory"] / name, v1["cpu"] / name]
            for folder in made:
                folder.mkdir()
            (made[0] / "memory.limit_in_bytes").write_text(str(limit_bytes))
            (made[1] / "cpu.cfs_period_us").write_text("100000")
            (made[1] / "cpu.cfs_quota_us").write_text("50000")
        elif {"memory", "cpu"} <= set((v2 / "cgroup.subtree_control").read_text().split()):
            made = [v2 / name]
            made[0].mkdir()
            (made[0] / "memory.max").write_text(str(limit_bytes))
            (made[0] / "cpu.max").write_text("50000 100000")
    except OSError:
        pass
    try:
        yield made if all(folder.is_dir() for folder in made) else []
    finally:
        for folder in made:
            if folder.is_dir():
                folder.rmdir()


@pytest.fixture
def cgroup_limits() -> Iterator[tuple[list[Path], int]]:
    available = read_mem_available_bytes()
    if available is None or not hasattr(os, "sched_getaffinity"):
        pytest.skip("no /proc/meminfo or CPU affinity here")
    limit = available // 2  # so the host's MemAvailable would overstate what the cgroup allows
    with _made_cgroups(limit) as folders:
        if not folders:
            pytest.skip("this process may not make a cgroup (needs root and a writable cgroup filesystem)")
        yield folders, limit


def test_a_server_in_a_real_cgroup_sizes_itself_within_it(cgroup_limits: tuple[list[Path], int]) -> None:
    folders, limit = cgroup_limits
    child = subprocess.run(
        [sys.executable, "-c", CHILD_IN_A_CGROUP, *(str(folder / "cgroup.procs") for folder in folders)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    assert 0 < seen["available"] <= limit
    affinity = sorted(os.sched_getaffinity(0))
    chosen = list(quota_slice(affinity, 1, socket.gethostname()))
    assert seen["ids"] == chosen  # half a CPU's time: one CPU, not the whole affinity mask
    assert seen["narrowed"] == (len(affinity) > 1)
    if seen["narrowed"]:
        assert seen["env"][CPU_BIND_ENV] == str(chosen[0])
    assert int(seen["env"][KV_CACHE_ENV]) <= max(1, limit // 4 // GIB)
