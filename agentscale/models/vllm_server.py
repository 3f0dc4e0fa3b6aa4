"""vLLM servers for ``local/`` models: start on demand, reuse, health-check, and never leave orphans.

One server per model per machine: every node that uses a model goes through the same server, so vLLM
batches their concurrent calls (on 2 CPU cores, 8 concurrent calls get ~5x the tokens/s of 8 sequential
ones). A server is reused when this process, another agentscale process (recorded in a state file in the
user cache) or the user (on the default port 8000) already serves the model. What this process starts,
it stops: at exit (atexit), on SIGTERM/SIGHUP (handlers installed when the main thread starts a
server), and if the process dies hard, because the child is asked to get SIGTERM when its parent dies
(Linux ``PR_SET_PDEATHSIG``). The server runs in its own session so a terminal's Ctrl-C reaches only
agentscale, which then stops the whole process group (API server, engine core and workers).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from agentscale.models.bundled import StatusCallback, cache_dir, ensure_bundled_model, file_lock
from agentscale.models.catalog import BUNDLED
from agentscale.models.local_names import UnknownLocalModel, resolve_local
from agentscale.models.memory_plan import check_room
from agentscale.models.process_group import group_members, group_rss_bytes
from agentscale.models.vllm_engine import (
    DEFAULT_HOST,
    EngineOptions,
    ServingError,
    VllmLaunchConfig,
    build_launch,
    require_engine,
)

DEFAULT_PORT = 8000  # vLLM's own default: where a user-started server is looked for


def shared_port() -> int:
    """Where `agentscale serve` listens and where a shared server is looked for:
    `AGENTSCALE_VLLM_PORT`, else 8000."""
    value = os.environ.get("AGENTSCALE_VLLM_PORT", "").strip()
    return int(value) if value.isdigit() else DEFAULT_PORT


DEFAULT_TIMEOUT_S = 300.0
_LOG_TAIL_LINES = 20
_STOP_GRACE_S = 15.0
_RECHECK_S = 5.0  # how often a server someone else owns is health-checked again
_POLL_S = 0.5
_STATUS_EVERY_S = 5.0


class PortInUseError(ServingError):
    """The requested port is taken by something that does not serve the requested model."""


class ServerStartError(ServingError):
    """A vLLM server exited or did not become ready; the message quotes the end of its log."""


@dataclass(frozen=True)
class VllmEndpoint:
    """Where a served model answers: pass ``litellm_model`` and ``api_base`` to litellm.

    ``pid`` is the server's process id when an agentscale process started it; ``started_here`` says
    whether this process owns (and will stop) it.
    """

    api_base: str
    model: str
    port: int
    pid: int | None = None
    started_here: bool = False

    @property
    def litellm_model(self) -> str:
        return f"hosted_vllm/{self.model}"


@dataclass(frozen=True)
class _Target:
    """What to serve: ``model`` is a folder or hub id for vLLM (``None`` until a bundled one is converted)."""

    served_name: str
    model: str | None
    bundled: str | None
    options: EngineOptions


@dataclass
class _Server:
    endpoint: VllmEndpoint
    process: subprocess.Popen[bytes] | None  # None: someone else's server, reused
    log_path: Path | None
    checked_at: float


_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it
_SERVERS: dict[str, _Server] = {}  # the server this process uses per model (started or reused)
_FOREGROUND: list[_Server] = []  # servers `agentscale serve` runs (several per model with replicas)
_NAME_LOCKS: dict[str, threading.Lock] = {}
_HANDLERS_INSTALLED = False
_ATEXIT_REGISTERED = False


# --------------------------------------------------------------------------------------------- public


def ensure_server(
    name_or_path: str,
    *,
    port: int | None = None,
    on_status: StatusCallback | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    options: EngineOptions | None = None,
    served_model_name: str | None = None,
    host: str = DEFAULT_HOST,
) -> VllmEndpoint:
    """Return a ready server for ``name_or_path``, starting one only if none is running.

    ``name_or_path`` is a bundled name (``smollm2-135m``, ``local/`` prefix allowed), a model folder or
    a hub id. ``port`` pins the port (reusing a server already there if it serves this model, else
    :class:`PortInUseError`); by default a free port is picked. ``on_status`` receives progress lines
    (conversion, start, loading, ready) for a spinner. Blocks up to ``timeout_s`` for readiness; thread-
    and process-safe: concurrent callers for one model get the same server.
    """
    target = _resolve_target(name_or_path, options, served_model_name)
    with _name_lock(target.served_name):
        known = _known(target.served_name)
        if known is not None:
            return known
        found = _find_running(target.served_name, port, host)
        if found is not None:
            if on_status:
                on_status(f"reusing the running server for {target.served_name} at {found.api_base}")
            return _remember_reused(found)
        engine = require_engine()
        target = _materialize(target, on_status)
        with file_lock(_lock_path(target.served_name)):  # one start per model across processes
            found = _find_running(target.served_name, port, host)
            if found is not None:
                return _remember_reused(found)
            # CPU servers start one at a time, so each memory check sees what the others really hold
            # (three sizing their KV caches at once once ran this machine out of memory).
            with file_lock(_lock_path("cpu-starts")) if engine.device == "cpu" else contextlib.nullcontext():
                if engine.device == "cpu" and target.bundled is not None:
                    check_room(BUNDLED[target.bundled], running=_running_summary())
                server = _start(target, engine.device, port, host, shared=False, on_status=on_status)
                _wait_ready(server, timeout_s, on_status)
        return server.endpoint


async def aensure_server(name_or_path: str, **kwargs: Any) -> VllmEndpoint:
    """:func:`ensure_server` for async callers (the gateway): the wait runs in a worker thread."""
    return await asyncio.to_thread(ensure_server, name_or_path, **kwargs)


def find_server(name_or_path: str, *, port: int | None = None) -> VllmEndpoint | None:
    """A running server for the model, or ``None``; never starts one (for ``agentscale models list``)."""
    served_name = _served_name(name_or_path)
    known = _known(served_name)
    if known is not None:
        return known
    try:
        return _find_running(served_name, port, DEFAULT_HOST)
    except PortInUseError:
        return None


def stop_server(name_or_path: str) -> bool:
    """Stop the server this process started for the model; forget a reused one. True if one was stopped."""
    served_name = _served_name(name_or_path)
    with _LOCK:
        server = _SERVERS.pop(served_name, None)
    if server is None or server.process is None:
        return False
    _stop(server)
    return True


def stop_all() -> None:
    """Stop every server this process started (registered with atexit on the first start)."""
    with _LOCK:
        servers = list(_SERVERS.values()) + _FOREGROUND
        _SERVERS.clear()
        _FOREGROUND.clear()
    for server in servers:
        if server.process is not None:
            _stop(server)


def install_signal_handlers() -> None:
    """Stop started servers on SIGTERM and SIGHUP, then exit as the signal would.

    Only handlers still at their default are replaced, and only from the main thread (Python allows no
    other); SIGINT needs none, since KeyboardInterrupt unwinds to the atexit hook. Called automatically
    when the main thread starts a server; the CLI may call it early.
    """
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
    _HANDLERS_INSTALLED = True


# ------------------------------------------------------------------------------------ resolution


def _resolve_target(name_or_path: str, options: EngineOptions | None, served_name: str | None) -> _Target:
    try:
        local = resolve_local(name_or_path)
    except UnknownLocalModel as exc:
        raise ServingError(str(exc)) from None
    user = options or EngineOptions()
    if local.kind == "bundled":
        spec = BUNDLED[local.name]
        recipe = EngineOptions(max_model_len=spec.context_length, kv_cache_space_gib=spec.kv_cache_space_gib)
        return _Target(served_name or spec.name, None, spec.name, user.over(recipe))
    if local.path is not None:
        return _Target(served_name or local.path.name, str(local.path), None, user)
    return _Target(served_name or local.name, local.name, None, user)  # a hub id; vLLM downloads it


def _running_summary() -> str:
    """The servers recorded in the state file, with what each holds (for a not-enough-memory error)."""
    parts = []
    for entry in _state_entries():
        held = group_rss_bytes(int(entry["pid"]))
        if held:
            parts.append(f"{entry['name']} ({held / 2**30:.1f} GiB, pid {entry['pid']})")
    return ", ".join(parts)


def _served_name(name_or_path: str) -> str:
    """The name a server of this model answers to; a name that resolves to nothing is taken as one
    (another process may serve a folder under that name)."""
    try:
        return _resolve_target(name_or_path, None, None).served_name
    except ServingError:
        return name_or_path.removeprefix("local/")


def _materialize(target: _Target, on_status: StatusCallback | None) -> _Target:
    if target.bundled is None:
        return target
    folder = ensure_bundled_model(target.bundled, on_status=on_status)
    return _Target(target.served_name, str(folder), target.bundled, target.options)


@contextlib.contextmanager
def _name_lock(served_name: str) -> Iterator[None]:
    with _LOCK:
        lock = _NAME_LOCKS.setdefault(served_name, threading.Lock())
    with lock:
        yield


def _known(served_name: str) -> VllmEndpoint | None:
    """The server this process already uses for the model, if it is still alive."""
    with _LOCK:
        server = _SERVERS.get(served_name)
    if server is None:
        return None
    if server.process is not None:
        if server.process.poll() is None:
            return server.endpoint
        _stop(server)  # it died: reap what is left of its process group, then start afresh
        return None
    if time.monotonic() - server.checked_at < _RECHECK_S:
        return server.endpoint
    if _serves(server.endpoint.port, served_name, DEFAULT_HOST):
        server.checked_at = time.monotonic()
        return server.endpoint
    _forget(server)  # its owner stopped it: start or find another
    return None


def _find_running(served_name: str, port: int | None, host: str) -> VllmEndpoint | None:
    """A healthy server for the model on ``port``, in the state file, or on the default port."""
    if port is not None:
        names = _served_names(port, host)
        if names is not None and served_name in names:
            return _endpoint(port, served_name, pid=_state_pid(port))
        if not _port_free(host, port):
            what = f"a server for {sorted(names)}" if names else "another program"
            raise PortInUseError(
                f"port {port} is already in use by {what}; choose another port or leave it unset "
                "to let agentscale pick a free one"
            )
        return None
    for entry in _state_entries():
        pid, entry_port = int(entry["pid"]), int(entry["port"])
        if entry.get("name") == served_name and _pid_alive(pid) and _serves(entry_port, served_name, DEFAULT_HOST):
            return _endpoint(entry_port, served_name, pid=pid)
    shared = shared_port()
    if _serves(shared, served_name, DEFAULT_HOST):
        return _endpoint(shared, served_name, pid=_state_pid(shared))
    return None


def _endpoint(port: int, served_name: str, pid: int | None, started_here: bool = False) -> VllmEndpoint:
    return VllmEndpoint(f"http://{DEFAULT_HOST}:{port}/v1", served_name, port, pid, started_here)


def _remember_reused(endpoint: VllmEndpoint) -> VllmEndpoint:
    with _LOCK:
        _SERVERS[endpoint.model] = _Server(endpoint, None, None, time.monotonic())
    return endpoint


def _forget(server: _Server) -> None:
    with _LOCK:
        if _SERVERS.get(server.endpoint.model) is server:
            del _SERVERS[server.endpoint.model]
        if server in _FOREGROUND:
            _FOREGROUND.remove(server)


# ---------------------------------------------------------------------------------------- health


def _served_names(port: int, host: str = DEFAULT_HOST, timeout_s: float = 2.0) -> set[str] | None:
    """Model ids listed by ``GET /v1/models`` on the port, or ``None`` if nothing answers like vLLM."""
    probe_host = DEFAULT_HOST if host in ("0.0.0.0", "::", "") else host
    # No proxy: an http_proxy in the environment must not swallow requests to localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{probe_host}:{port}/v1/models", timeout=timeout_s) as response:
            payload = json.loads(response.read())
        return {str(item["id"]) for item in payload.get("data", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _serves(port: int, served_name: str, host: str) -> bool:
    names = _served_names(port, host)
    return names is not None and served_name in names


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and -1 would probe our own group or every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped: common in containers) answers signal 0 too
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


# ------------------------------------------------------------------------------------ start / stop


def _start(
    target: _Target,
    device: str,
    port: int | None,
    host: str,
    *,
    shared: bool,
    on_status: StatusCallback | None,
    extra_env: dict[str, str] | None = None,
    foreground: bool = False,
) -> _Server:
    """Launch a server; ``extra_env`` adds to the launch recipe's environment (a replica's CPU cores),
    ``foreground`` keeps it out of the per-model table, which holds one server per model."""
    assert target.model is not None
    if port is None:
        port = _free_port(host)
    elif not _port_free(host, port):
        raise PortInUseError(f"port {port} is already in use by another program; choose another port")
    config = VllmLaunchConfig(
        model=target.model,
        port=port,
        device="cpu" if device == "cpu" else "gpu",
        served_model_name=target.served_name,
        host=host,
        options=target.options,
        offline=Path(target.model).is_dir(),
    )
    argv, env_extra = build_launch(config)
    env_extra.update(extra_env or {})
    log_path = cache_dir() / "logs" / f"vllm-{_slug(target.served_name)}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        header = f"# agentscale: {' '.join(argv)}\n# env: {json.dumps(env_extra)}\n"
        log.write(header.encode())
        log.flush()
        process = _spawn(argv, {**os.environ, **env_extra}, log)
    endpoint = _endpoint(port, target.served_name, pid=process.pid, started_here=True)
    server = _Server(endpoint, process, log_path, time.monotonic())
    with _LOCK:
        if foreground:
            _FOREGROUND.append(server)
        else:
            _SERVERS[target.served_name] = server
    _install_exit_hooks()
    _state_add(
        {
            "name": target.served_name,
            "port": port,
            "pid": process.pid,
            "owner_pid": os.getpid(),
            "model": target.model,
            "log": str(log_path),
            "shared": shared,
            "started": time.time(),
        }
    )
    if on_status:
        on_status(f"starting vLLM ({device}) for {target.served_name} on port {port}; log: {log_path}")
    return server


def _wait_ready(server: _Server, timeout_s: float, on_status: StatusCallback | None) -> None:
    """Block until the server lists its model; stop it and raise with its log tail if it cannot."""
    assert server.process is not None and server.log_path is not None
    name, port = server.endpoint.model, server.endpoint.port
    started = last_status = time.monotonic()
    try:
        while True:
            code = server.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"the vLLM server for {name} exited with code {code} while starting; "
                    f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
                )
            if _serves(port, name, DEFAULT_HOST):
                if on_status:
                    on_status(f"{name} ready at {server.endpoint.api_base} in {time.monotonic() - started:.1f}s")
                return
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise ServerStartError(
                    f"the vLLM server for {name} was not ready after {timeout_s:.0f}s; "
                    f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
                )
            if on_status and time.monotonic() - last_status >= _STATUS_EVERY_S:
                last_status = time.monotonic()
                on_status(f"loading {name} ({elapsed:.0f}s)")
            time.sleep(_POLL_S)
    except BaseException:  # also Ctrl-C while loading: never leave a half-started server behind
        _stop(server)
        raise


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 65536))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(log unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _lock_path(served_name: str) -> Path:
    folder = cache_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"server-{_slug(served_name)}.lock"


def _stop(server: _Server) -> None:
    """Forget a server this process started, stop its process group and drop its state entry."""
    _forget(server)
    if server.process is not None:
        _terminate(server.process)
        _state_remove(server.process.pid)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after a grace period."""
    pgid = process.pid  # the child leads its own session and process group
    _killpg(pgid, signal.SIGTERM)
    try:
        process.wait(_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _killpg(pgid, signal.SIGKILL)
        process.wait(5.0)
    deadline = time.monotonic() + 5.0  # engine core and workers exit right after the API server
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_members(pgid):
        _killpg(pgid, signal.SIGKILL)


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# ---------------------------------------------------------------------------- spawning / parent death


_PR_SET_PDEATHSIG = 1
_spawn_queue: queue.Queue[tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]] = queue.Queue()
_spawner: threading.Thread | None = None


def _spawn(argv: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """Start the server from the spawner thread (see :func:`_spawner_loop`), in its own session."""
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

    global _spawner
    with _LOCK:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_spawner_loop, name="agentscale-vllm-spawner", daemon=True)
            _spawner.start()
    future: Future[subprocess.Popen[bytes]] = Future()
    _spawn_queue.put((popen, future))
    return future.result()


def _spawner_loop() -> None:
    """Fork children from one daemon thread that lives as long as the process.

    Linux delivers ``PR_SET_PDEATHSIG`` when the *thread* that forked the child ends, not the process;
    forking from a worker thread (``asyncio.to_thread``) would kill the server when that thread retires.
    """
    while True:
        popen, future = _spawn_queue.get()
        try:
            future.set_result(popen())
        except BaseException as exc:
            future.set_exception(exc)


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


def _install_exit_hooks() -> None:
    global _ATEXIT_REGISTERED
    with _LOCK:
        first, _ATEXIT_REGISTERED = not _ATEXIT_REGISTERED, True
    if first:
        atexit.register(stop_all)
    install_signal_handlers()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all()
    raise SystemExit(128 + signum)  # unwinds like an exit, so other cleanup and atexit hooks run


# ------------------------------------------------------------------------------------- state file


def _state_path() -> Path:
    return cache_dir() / "servers.json"


@contextlib.contextmanager
def _state_locked() -> Iterator[list[dict[str, Any]]]:
    """The state file's entries, locked against other processes; changes are written back atomically."""
    path = _state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.with_suffix(".lock")):
        try:
            entries = json.loads(path.read_text()).get("servers", [])
        except (OSError, ValueError, AttributeError):
            entries = []
        before = list(entries)
        yield entries
        entries[:] = [e for e in entries if _pid_alive(int(e.get("pid", 0)))]
        if entries != before:
            tmp = path.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps({"servers": entries}, indent=2))
            os.replace(tmp, path)


def _state_entries() -> list[dict[str, Any]]:
    with _state_locked() as entries:
        return list(entries)


def _state_add(entry: dict[str, Any]) -> None:
    with _state_locked() as entries:
        entries[:] = [e for e in entries if e.get("port") != entry["port"]]
        entries.append(entry)


def _state_remove(pid: int) -> None:
    with _state_locked() as entries:
        entries[:] = [e for e in entries if e.get("pid") != pid]


def _state_pid(port: int) -> int | None:
    for entry in _state_entries():
        if entry.get("port") == port:
            return int(entry["pid"])
    return None
