"""Which process a run belongs to, and whether that process is still alive.

A run marked `running` may be running in another process, or may have been left so by a process
that died (`kill -9`, an OOM kill, a power cut). Two resumes of one run at once paid for the same
calls twice and stored every item twice, and nothing told a dead run from a live one. A run keeps
its owner as `host/boot/pid/start`: the machine, its boot, the process id and the process's start
time, so that a process id the system gave again to another program is not taken for the owner.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agentscale.errors import RunBusy


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:  # not Linux: the process id and the host are all there is
        return ""


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the process name (state first), [] where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return stat.rsplit(")", 1)[1].split()  # the name before ')' may hold spaces


def _start_time(pid: int) -> str:
    """The process's start in clock ticks since boot (field 22), '' where it cannot be read."""
    fields = _stat(pid)
    return fields[19] if fields else ""


def current_owner() -> str:
    """This process, as stored in a run's `owner`."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_time(pid)}"


def owner_alive(owner: str | None) -> bool | None:
    """Whether the process that owns a run still runs: None when it cannot be told (no owner
    stored, as in runs of older releases, or another machine sharing the database file)."""
    if not owner:
        return None
    host, boot, pid_text, start = owner.split("/")
    if host != socket.gethostname():
        return None
    if boot != _boot_id():
        return False  # the machine restarted since
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    if not start:
        return True
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z" and fields[19] == start  # a zombie has ended


def describe_owner(owner: str | None) -> str:
    """The owner as an error names it: "process 4242 on host gpu-3"."""
    if not owner:
        return "another process"
    host, _, pid, _ = owner.split("/")
    return f"process {pid} on host {host}"


# (database file, run id) of the runs this process is running now, from any thread or event loop
_RUNNING_HERE: set[tuple[str, str]] = set()
_RUNNING_HERE_LOCK = threading.Lock()


@contextmanager
def claim_in_this_process(database: Path, run_id: str) -> Iterator[None]:
    """Hold a run for the block, refusing it when this process runs it already. The owner check looks
    at other processes only: `asyncio.gather(e.run(), e.run())` ran every item twice and paid for every
    call twice, and so did two objects resuming one run (`Evaluation.resume` twice)."""
    key = (str(database.resolve()), run_id)
    with _RUNNING_HERE_LOCK:
        if key in _RUNNING_HERE:
            raise RunBusy(f"run {run_id} is running in this process already: await that run() before another")
        _RUNNING_HERE.add(key)
    try:
        yield
    finally:
        with _RUNNING_HERE_LOCK:
            _RUNNING_HERE.discard(key)
