"""The servers agentscale processes started on this machine, recorded in a state file in the user cache
(``servers.json``), so that another process reuses a running server instead of starting a second one.
Entries whose process is gone are dropped whenever the file is written."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentscale.errors import ServingError
from agentscale.models.bundled import cache_dir, file_lock
from agentscale.models.serving.engine import DEFAULT_HOST
from agentscale.models.serving.health import pid_alive


def state_path() -> Path:
    return cache_dir() / "servers.json"


@contextlib.contextmanager
def _locked() -> Iterator[list[dict[str, Any]]]:
    """The state file's entries, locked against other processes; changes are written back atomically."""
    path = state_path()
    with file_lock(path.with_suffix(".lock")):
        entries = _recorded(path)
        before = list(entries)
        yield entries
        entries[:] = [e for e in entries if pid_alive(int(e.get("pid", 0)))]
        if entries != before:
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"servers": entries}, indent=2))
            os.replace(tmp, path)


def _well_formed(entry: Any) -> bool:
    """An entry every reader can use (a damaged file's `["oops"]` was an AttributeError in every command)."""
    return (
        isinstance(entry, dict)
        and all(isinstance(entry.get(key), int) for key in ("pid", "port"))
        and isinstance(entry.get("name"), str)
    )


def _recorded(path: Path) -> list[dict[str, Any]]:
    """The well-formed entries of the state file (none when it is missing or damaged)."""
    try:
        recorded = json.loads(path.read_text()).get("servers", [])
    except (OSError, ValueError, AttributeError):
        recorded = []
    return [e for e in recorded if _well_formed(e)] if isinstance(recorded, list) else []


def entries() -> list[dict[str, Any]]:
    """The recorded servers still alive. Where the cache folder is there but the lock cannot be taken
    in it (a cache mounted read-only, say in a container) they are read without it: `models list`
    failed there entirely. A cache that is no folder (a file in the way) stays an error."""
    try:
        with _locked() as current:
            return list(current)
    except ServingError:
        if not state_path().parent.is_dir():
            raise
        return [e for e in _recorded(state_path()) if pid_alive(int(e.get("pid", 0)))]


def add(entry: dict[str, Any]) -> None:
    """Record a started server (replacing whatever was recorded on its port)."""
    with _locked() as current:
        current[:] = [e for e in current if e.get("port") != entry["port"]]
        current.append(entry)


def remove(pid: int) -> None:
    with _locked() as current:
        current[:] = [e for e in current if e.get("pid") != pid]


def host_of(entry: dict[str, Any]) -> str:
    """The address a recorded server listens on (entries written before it was recorded: loopback)."""
    host = entry.get("host")
    return host if isinstance(host, str) and host else DEFAULT_HOST


def entry_on(port: int) -> dict[str, Any] | None:
    """The recorded server listening on ``port``, if any."""
    return next((entry for entry in entries() if entry.get("port") == port), None)


def pid_on(port: int) -> int | None:
    """The recorded server process listening on ``port``, if any."""
    entry = entry_on(port)
    return int(entry["pid"]) if entry is not None else None


def key_env_of(entry: dict[str, Any]) -> str | None:
    """The variable holding the API key a recorded server asks for (None: it asks for none)."""
    name = entry.get("api_key_env")
    return name if isinstance(name, str) and name else None
