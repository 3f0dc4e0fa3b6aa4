"""The sandbox's isolation modes and which of them this machine may offer (the runner probes them).

Modes, strongest first:

- ``root-ns`` (running as root): ``unshare`` mount/net/pid/ipc/uts namespaces, a pivoted read-only
  root with only OS libraries and the interpreter, a one-off unprivileged uid (so ``RLIMIT_NPROC``
  bounds fork bombs), no network, its own pid space (killing it kills every descendant).
- ``user-ns`` (not root, unprivileged user namespaces enabled): the same jail built inside a user
  namespace; the program keeps the caller's uid but holds no capabilities.
- ``plain`` (no namespaces): rlimits, a new session, a scrubbed environment and a private work dir;
  as root, an unprivileged uid when the interpreter is readable by others. The file system and the
  network are *not* isolated in this mode, and without that private uid a process the program
  detaches (a new session of its own) outlives the run: only the uid's kill reaches it.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from dataclasses import dataclass

MODES = ("root-ns", "user-ns", "plain")


@dataclass(frozen=True)
class Isolation:
    """A sandbox mode and what it guarantees on this machine."""

    mode: str
    private_filesystem: bool
    no_network: bool
    pid_namespace: bool
    private_uid: bool
    notes: str = ""

    def unshare_args(self) -> list[str]:
        """The ``unshare`` command prefix for this mode (empty for ``plain``, where the bootstrap, our
        child, sets its own parent-death signal).

        ``unshare`` runs in a session of its own, so nothing took it down with a process killed with
        SIGKILL (an eval killed, an OOM kill): it and the program (its ``--kill-child``) lived on, a
        program sleeping an hour for an hour. ``setpriv --pdeathsig`` gives it a parent-death signal
        first, so it dies with the thread that started it, and the program and its namespace with it."""
        if self.mode == "plain":
            return []
        flags = ["--mount", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if self.mode == "user-ns":
            flags = ["--user", "--map-root-user", *flags]
        setpriv = shutil.which("setpriv")
        dies_with_parent = [setpriv, "--pdeathsig", "KILL"] if setpriv else []
        return [*dies_with_parent, shutil.which("unshare") or "unshare", *flags, "--"]


def interpreter() -> str:
    """The real interpreter binary (a venv's ``bin/python`` is a symlink the jail cannot follow)."""
    return os.path.realpath(sys.executable)


def interpreter_dirs() -> list[str]:
    """Directories the jail must expose for :func:`interpreter` to start (prefix, binary's parent)."""
    dirs = [os.path.realpath(sys.base_prefix)]
    exe_dir = os.path.dirname(os.path.dirname(interpreter()))
    if not any(exe_dir == d or exe_dir.startswith(d + os.sep) for d in dirs):
        dirs.append(exe_dir)
    return dirs


def _readable_by_others(path: str) -> bool:
    """True when a uid that is neither owner nor group can reach and read ``path``."""
    current = os.path.realpath(path)
    while True:
        mode = os.stat(current).st_mode
        if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
            return False
        parent = os.path.dirname(current)
        if parent == current:
            return True
        current = parent


def plain_isolation() -> Isolation:
    """The fallback mode's description on this machine."""
    private_uid = os.geteuid() == 0 and all(_readable_by_others(d) for d in interpreter_dirs())
    notes = "file system and network are shared with the host"
    if not private_uid:
        notes += "; a process the program detaches (setsid) outlives the run"
    if os.geteuid() == 0 and not private_uid:
        notes += "; runs as root (interpreter not readable by other users), so fork bombs are not bounded"
    return Isolation("plain", False, False, False, private_uid, notes)


def candidates() -> list[Isolation]:
    """Modes worth probing on this machine, strongest first."""
    found: list[Isolation] = []
    if sys.platform.startswith("linux") and shutil.which("unshare"):
        if os.geteuid() == 0:
            found.append(Isolation("root-ns", True, True, True, True))
        else:
            found.append(Isolation("user-ns", True, True, True, False, "fork bombs bounded per user namespace"))
    found.append(plain_isolation())
    return found
