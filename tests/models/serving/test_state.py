"""The servers state file and the probes that never start anything (health), without vLLM: the
scripted server answering `/v1/models`, real processes, a real state file in a private cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale.errors import ServingError
from agentscale.models.serving import ensure_server, find_server, state, stop_all
from agentscale.models.serving.engine import DEFAULT_HOST
from agentscale.models.serving.health import base_url, pid_alive, serves
from agentscale.models.serving.server import _RECHECK_S
from agentscale.testing import ScriptedServer


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("AGENTSCALE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    yield tmp_path / "cache"
    stop_all()


@pytest.fixture
def lists_qwen() -> Iterator[int]:
    """A real HTTP server whose `/v1/models` lists qwen-0.5b, as vLLM serving it would."""
    with ScriptedServer(models=("qwen-0.5b",)) as server:
        yield server.port


def _entry(port: int, name: str = "m", pid: int | None = None, **more: object) -> dict[str, object]:
    return {"name": name, "port": port, "pid": os.getpid() if pid is None else pid, **more}


def test_a_server_recorded_on_a_port_replaces_the_one_recorded_there_before(cache: Path) -> None:
    """One port, one server: a stale entry left on the port made `find_server` return the old
    model's endpoint for the new one (or both listed by `serve --list`)."""
    state.add(_entry(35101, "old"))
    state.add(_entry(35102, "other"))
    state.add(_entry(35101, "new"))
    assert sorted((e["port"], e["name"]) for e in state.entries()) == [(35101, "new"), (35102, "other")]
    assert state.pid_on(35101) == os.getpid() and state.pid_on(35199) is None


def test_damaged_entries_are_ignored_not_an_error_in_every_command(cache: Path) -> None:
    """A hand-edited or truncated state file must not break `serve`, `find_server`, ...: entries
    without a name, pid or port (or not objects) are skipped."""
    good = _entry(35103)
    damaged = ["oops", {"port": 35104, "pid": os.getpid()}, {"name": "x", "port": "35105", "pid": os.getpid()}]
    (cache / "servers.json").write_text(json.dumps({"servers": [good, *damaged]}))
    assert state.entries() == [good]
    (cache / "servers.json").write_text("{not json")
    assert state.entries() == []


def test_entries_of_dead_processes_are_dropped_when_the_file_is_written(cache: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    state.add(_entry(35106, "gone", pid=child.pid))
    assert state.entries() == []
    state.add(_entry(35107, "alive"))
    state.remove(os.getpid())
    assert state.entries() == []


def test_a_recorded_host_is_kept_and_a_missing_one_is_loopback() -> None:
    """A server started on one interface (`--host 10.0.0.5`) is reached only there: read back as
    loopback, a running server was not found and a second one started."""
    assert state.host_of(_entry(35108, host="::1")) == "::1"
    assert state.host_of(_entry(35108)) == DEFAULT_HOST
    assert state.host_of(_entry(35108, host="")) == DEFAULT_HOST


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", ""])
def test_a_wildcard_bind_is_reached_on_loopback(wildcard: str) -> None:
    """`--host ::` listens everywhere; `http://[::]:port` is no address a client can call."""
    assert base_url(wildcard, 35110) == f"http://{DEFAULT_HOST}:35110"
    assert base_url("::1", 35110) == "http://[::1]:35110"


def test_a_port_serving_another_model_does_not_serve_this_one(lists_qwen: int) -> None:
    """Reusing a server that lists a different model sent every call to the wrong model (404s)."""
    assert serves(lists_qwen, "qwen-0.5b", "127.0.0.1")
    assert not serves(lists_qwen, "smollm2-135m", "127.0.0.1")


def test_a_zombie_or_a_nonpositive_pid_is_not_alive() -> None:
    """A dead child not yet reaped still answers signal 0: counted alive, its entry (and port) stayed
    reserved and a dead server was "reused". Pid 0 or -1 would probe our own group or every process."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.02)
    assert not pid_alive(child.pid)
    child.wait()
    assert pid_alive(os.getpid())
    assert not pid_alive(0) and not pid_alive(-1)


def test_a_reused_server_its_owner_stopped_is_not_returned_after_the_recheck_interval(cache: Path) -> None:
    """A server someone else started is probed again every few seconds: never rechecked, a process
    kept handing out the endpoint of a server its owner had stopped, and every call was refused."""
    with ScriptedServer(models=("smollm2-135m",)) as server:  # answers /v1/models as vLLM would
        endpoint = ensure_server("smollm2-135m", port=server.port)
        assert endpoint.port == server.port and not endpoint.started_here
        assert find_server("smollm2-135m") == endpoint  # remembered, not probed again at once
    time.sleep(_RECHECK_S + 0.2)
    assert find_server("smollm2-135m") is None


def test_the_servers_are_listed_where_the_lock_cannot_be_taken(cache: Path) -> None:
    """A cache mounted read-only (a container's pre-filled cache) made `models list` fail entirely:
    the state file's lock could not be created (here a folder stands where the lock file would be,
    which root's permissions cannot wave through). Reading needs no lock; writing still does."""
    from agentscale.cli.app import main

    good = _entry(35108)
    (cache / "servers.json").write_text(json.dumps({"servers": [good]}))
    (cache / "servers.lock").mkdir()
    assert state.entries() == [good]
    assert main(["models", "list", "--json"]) == 0
    with pytest.raises(ServingError, match=r"servers\.lock"):
        state.add(_entry(35109))
