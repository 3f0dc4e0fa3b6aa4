"""A server's processes: started in a session of their own that dies with us, stopped as a whole group,
and read from /proc (to wait for them to end and to say how much memory a server holds: its API
process, engine core and workers together)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

_PROC = Path("/proc")
_STOP_GRACE_S = 15.0
_GROUP_EXIT_S = 5.0  # engine core and workers exit right after the API server, or soon after a SIGKILL
_PR_SET_PDEATHSIG = 1


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group, read from /proc; elsewhere a signal-0 probe."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_rss_bytes(pgid: int) -> int | None:
    """Resident memory of the whole group (None where /proc cannot tell)."""
    if not _PROC.is_dir():
        return None
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in group_members(pgid):
        try:
            total += int((_PROC / str(pid) / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total or None


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to a process group that may already be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop a server's whole process group: SIGTERM, then SIGKILL after a grace period."""
    pgid = process.pid  # the child leads its own session and process group
    signal_group(pgid, signal.SIGTERM)
    try:
        process.wait(_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        signal_group(pgid, signal.SIGKILL)
        process.wait(5.0)
    if not _group_gone(pgid, _GROUP_EXIT_S):
        signal_group(pgid, signal.SIGKILL)
        _group_gone(pgid, _GROUP_EXIT_S)  # a killed process lingers until the kernel tears it down


def _group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until no live process is left in the group; False if one still is after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


class _Spawner:
    """Forks children from one daemon thread that lives as long as the process.

    Linux delivers ``PR_SET_PDEATHSIG`` when the *thread* that forked the child ends, not the process;
    forking from a worker thread (``asyncio.to_thread``) would kill the server when that thread retires.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]] = (
            queue.Queue()
        )
        self._thread: threading.Thread | None = None

    def run(self, popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="agentscale-vllm-spawner", daemon=True)
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((popen, future))
        return future.result()

    def _loop(self) -> None:
        while True:
            popen, future = self._queue.get()
            try:
                future.set_result(popen())
            except BaseException as exc:
                future.set_exception(exc)


_SPAWNER = _Spawner()


def spawn(argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """Start a server from the spawner thread, in its own session, asked to get SIGTERM when we die."""
    preexec = _parent_death_signal()

    def popen() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # only calls prctl and getppid, both async-signal-safe
        )

    return _SPAWNER.run(popen)


def _parent_death_signal() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when we die, or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
