"""The processes of a server's process group, read from /proc: to wait for them to end and to say how
much memory a server holds (its API process, engine core and workers together)."""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


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
