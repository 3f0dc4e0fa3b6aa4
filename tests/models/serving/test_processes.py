"""Stopping a server's process group leaves no live process, even one that ignores SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from agentscale.models.serving import processes
from agentscale.models.serving.processes import group_members, terminate

# The leader starts a member that ignores SIGTERM (as a busy engine core can) and holds 1 GiB, so its
# teardown after a SIGKILL takes a while (as a model server's does); it says so, and waits.
_GROUP = """
import signal, subprocess, sys, time
member = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); held = bytearray(1 << 30); "
    "print('ready', flush=True); time.sleep(60)"],
    stdout=subprocess.PIPE)
sys.stdout.write(member.stdout.readline().decode()); sys.stdout.flush()
time.sleep(60)
"""


def test_terminate_returns_only_when_the_whole_group_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_GROUP_EXIT_S", 0.5)
    leader = subprocess.Popen([sys.executable, "-c", _GROUP], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert leader.stdout is not None and leader.stdout.readline() == b"ready\n"
        assert len(group_members(leader.pid)) == 2
        terminate(leader)
        assert group_members(leader.pid) == []
    finally:
        processes.signal_group(leader.pid, signal.SIGKILL)
        leader.wait(5)
