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
import copy
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from agentscale.errors import ServingError
from agentscale.models.bundled import (
    Cancelled,
    StatusCallback,
    cache_dir,
    ensure_bundled_model,
    file_lock,
    waiting_notice,
)
from agentscale.models.catalog import BUNDLED, BundledModelError
from agentscale.models.local_names import UnknownLocalModel, resolve_local
from agentscale.models.routes import answered_in_process
from agentscale.models.serving import state
from agentscale.models.serving.engine import DEFAULT_HOST, EngineOptions, VllmLaunchConfig, build_launch, require_engine
from agentscale.models.serving.health import (
    base_url,
    free_port,
    pid_alive,
    port_free,
    refuses_key,
    served_names,
    serves,
)
from agentscale.models.serving.hub import hub_id_problem
from agentscale.models.serving.memory_plan import room_for
from agentscale.models.serving.processes import group_rss_bytes, spawn, terminate

DEFAULT_PORT = 8000  # vLLM's own default: where a user-started server is looked for


PORT_ENV = "AGENTSCALE_VLLM_PORT"


def shared_port() -> int:
    """Where `agentscale serve` listens and where a shared server is looked for:
    `AGENTSCALE_VLLM_PORT`, else 8000. A value that is no port is an error, as a start timeout's is
    (`abc` or `-5` became 8000 without a word, a new user's walk)."""
    value = os.environ.get(PORT_ENV, "").strip()
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ServingError(f"{PORT_ENV}={value!r}: give a port number from 1 to 65535, or unset it (8000)")
    return int(value)


DEFAULT_TIMEOUT_S = 300.0
START_TIMEOUT_ENV = "AGENTSCALE_VLLM_START_TIMEOUT"
API_KEY_ENV = "VLLM_API_KEY"  # vLLM reads the key it asks every request for here


def start_timeout_s() -> float:
    """How long a start waits for its server to answer: `AGENTSCALE_VLLM_START_TIMEOUT` seconds, else
    300 (servers start inside eval, run and optimize, which have no flag for it; a slow disk or CPU
    loading a large model may need more)."""
    value = os.environ.get(START_TIMEOUT_ENV, "").strip()
    if not value:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ServingError(f"{START_TIMEOUT_ENV}={value!r}: give a number of seconds above 0")
    return seconds


_LOG_TAIL_LINES = 20
_RECHECK_S = 5.0  # how often a server someone else owns is health-checked again
_POLL_S = 0.5
_STATUS_EVERY_S = 5.0


class PortInUseError(ServingError):
    """The requested port is taken by something that does not serve the requested model."""


class KeyNotHere(ServingError):
    """A server was started with an API key whose variable this process does not have."""


class ServerStartError(ServingError):
    """A vLLM server exited or did not become ready; the message quotes the end of its log."""


@dataclass(frozen=True)
class VllmEndpoint:
    """Where a served model answers: pass ``litellm_model`` and ``api_base`` to litellm.

    ``pid`` is the server's process id when an agentscale process started it; ``started_here`` says
    whether this process owns (and will stop) it; ``host`` is the address it listens on;
    ``api_key_env`` names the environment variable holding the key it was started with (`agentscale
    serve --api-key-env`), None when it asks for none.
    """

    api_base: str
    model: str
    port: int
    pid: int | None = None
    started_here: bool = False
    host: str = DEFAULT_HOST
    api_key_env: str | None = None

    @property
    def litellm_model(self) -> str:
        return f"hosted_vllm/{self.model}"

    def api_key(self) -> str | None:
        """The key its requests must bear, from ``api_key_env`` in this process's environment."""
        return key_from(self.api_key_env, f"{self.model} at {self.api_base}")


def key_from(variable: str | None, server: str) -> str | None:
    """The value of ``variable`` (None when no variable is named); a server started with a key that
    this process does not have is an error naming both, not a server taken for someone else's."""
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise KeyNotHere(
            f"{server} was started with the API key in ${variable}, which is not set here; set it to reach the server"
        )
    return key


@dataclass(frozen=True)
class Target:
    """What to serve: ``model`` is a folder or hub id for vLLM (``None`` until a bundled one is converted)."""

    served_name: str
    model: str | None
    bundled: str | None
    options: EngineOptions


@dataclass
class Server:
    """A server this process uses: started here (``process``), or someone else's, reused."""

    endpoint: VllmEndpoint
    process: subprocess.Popen[bytes] | None  # None: someone else's server, reused
    log_path: Path | None
    checked_at: float


class _Servers:
    """What this process serves: the server it uses per model (started or reused) and the servers
    `agentscale serve` runs in the foreground (several per model with replicas); thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # re-entrant: the SIGTERM handler may run while the main thread holds it
        self.by_name: dict[str, Server] = {}
        self.foreground: list[Server] = []
        self.name_locks: dict[str, threading.Lock] = {}
        # per model, when its last start (or its conversion) failed here and why: callers that waited
        # on that start get its error instead of launching the server again (one eval's items launched
        # it twice) or converting the model again (minutes each, to the same failure)
        self.failed_starts: dict[str, tuple[float, ServingError]] = {}
        self.atexit_registered = False
        self.handlers_installed = False


_SERVERS = _Servers()


# --------------------------------------------------------------------------------------------- public


def ensure_server(
    name_or_path: str,
    *,
    port: int | None = None,
    on_status: StatusCallback | None = None,
    timeout_s: float | None = None,
    options: EngineOptions | None = None,
    served_model_name: str | None = None,
    host: str = DEFAULT_HOST,
    recheck: bool = False,
    cancelled: threading.Event | None = None,
) -> VllmEndpoint:
    """Return a ready server for ``name_or_path``, starting one only if none is running.

    ``name_or_path`` is a bundled name (``smollm2-135m``, ``local/`` prefix allowed), a model folder or
    a hub id. ``port`` pins the port (reusing a server already there if it serves this model, else
    :class:`PortInUseError`); by default a free port is picked. ``on_status`` receives progress lines
    (conversion, start, loading, ready) for a spinner. Blocks up to ``timeout_s`` for readiness
    (default: :func:`start_timeout_s`); thread- and process-safe: concurrent callers for one model get
    the same server (or the same failed start). ``recheck`` probes a server someone else owns now
    instead of trusting a health check of the last few seconds.
    """
    target = resolve_target(name_or_path, options, served_model_name)
    wait_s = start_timeout_s() if timeout_s is None else timeout_s  # a bad setting fails before any work
    asked = time.monotonic()
    with name_lock(target.served_name):
        _refuse_if_failed_while_waiting(target.served_name, asked)
        known = known_server(target.served_name, recheck=recheck, on_status=on_status)
        if known is not None:
            return known
        found = find_running(target.served_name, port, host)
        if found is not None:
            if on_status:
                on_status(f"reusing the running server for {target.served_name} at {found.api_base}")
            return _remember_reused(found)
        engine = require_engine()
        try:
            target = materialize(target, on_status, cancelled)
        except BundledModelError as exc:
            _SERVERS.failed_starts[target.served_name] = (time.monotonic(), exc)
            raise
        with start_lock(target.served_name, cancelled, on_status):  # one start per model across processes
            found = find_running(target.served_name, port, host)
            if found is not None:
                if on_status:
                    on_status(f"reusing the server another process started for {target.served_name}")
                return _remember_reused(found)
            with cpu_starts_lock(engine.device, cancelled, on_status):
                target = with_room(target, engine.device, on_status)
                if cancelled is not None and cancelled.is_set():
                    raise Cancelled(f"{target.served_name}'s start was given up")
                try:
                    server = start(target, engine.device, port, host, shared=False, on_status=on_status)
                    _wait_ready(server, wait_s, on_status, cancelled)
                except ServerStartError as exc:
                    _SERVERS.failed_starts[target.served_name] = (time.monotonic(), exc)
                    raise
        return server.endpoint


def _refuse_if_failed_while_waiting(served_name: str, asked: float) -> None:
    """A caller that asked while another thread's start of the model was under way, and that start
    failed, gets its error (concurrent callers get the same server, or the same failure); a caller
    asking afterwards tries again (the cause may be gone: memory freed, a file mended)."""
    failed = _SERVERS.failed_starts.get(served_name)
    if failed is not None and failed[0] >= asked:
        raise copy.copy(failed[1]) from failed[1]  # a copy: each thread's raise sets its own traceback


async def aensure_server(name_or_path: str, **kwargs: Any) -> VllmEndpoint:
    """:func:`ensure_server` for async callers (the gateway): the wait runs in a worker thread, which
    a cancelled caller (Ctrl-C) stops at its next check: the thread went on waiting for locks and the
    server (up to the 300 s start timeout, joined at exit) and could start a server after the Ctrl-C."""
    cancelled = threading.Event()
    try:
        return await asyncio.to_thread(ensure_server, name_or_path, cancelled=cancelled, **kwargs)
    except asyncio.CancelledError:
        cancelled.set()
        raise


def find_server(name_or_path: str, *, port: int | None = None) -> VllmEndpoint | None:
    """A running server for the model, or ``None``; never starts one (for ``agentscale models list``)."""
    served_name = _served_name(name_or_path)
    known = known_server(served_name)
    if known is not None:
        return known
    try:
        return find_running(served_name, port, DEFAULT_HOST)
    except (PortInUseError, KeyNotHere):  # listing needs no key: a server out of reach is not running here
        return None


def stop_server(name_or_path: str) -> bool:
    """Stop the server this process started for the model; forget a reused one. True if one was stopped."""
    served_name = _served_name(name_or_path)
    with _SERVERS.lock:
        server = _SERVERS.by_name.pop(served_name, None)
    if server is None or server.process is None:
        return False
    stop(server)
    return True


def stop_all() -> None:
    """Stop every server this process started (registered with atexit on the first start)."""
    with _SERVERS.lock:
        servers = list(_SERVERS.by_name.values()) + _SERVERS.foreground
        _SERVERS.by_name.clear()
        _SERVERS.foreground.clear()
    for server in servers:
        if server.process is not None:
            stop(server)


def install_signal_handlers() -> None:
    """Stop started servers on SIGTERM and SIGHUP, then exit as the signal would.

    Only handlers still at their default are replaced, and only from the main thread (Python allows no
    other); SIGINT needs none, since KeyboardInterrupt unwinds to the atexit hook. Called automatically
    when the main thread starts a server; the CLI may call it early.
    """
    if _SERVERS.handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
    _SERVERS.handlers_installed = True


# ------------------------------------------------------------------------------------ resolution


def resolve_target(
    name_or_path: str, options: EngineOptions | None, served_name: str | None, *, check_hub: bool = True
) -> Target:
    """What serving ``name_or_path`` means: a bundled model (with its recipe under ``options``), a
    folder, or a hub id (asked of the cache and the hub first unless ``check_hub`` is off:
    `serving.hub`); ``served_name`` overrides the name clients use."""
    try:
        local = resolve_local(name_or_path)
    except UnknownLocalModel as exc:
        raise ServingError(str(exc)) from None
    user = options or EngineOptions()
    if local.kind == "bundled":
        spec = BUNDLED[local.name]
        recipe = EngineOptions(max_model_len=spec.context_length, kv_cache_space_gib=spec.kv_cache_space_gib)
        return Target(served_name or spec.name, None, spec.name, user.over(recipe))
    if local.path is not None:
        return Target(served_name or local.path.name, str(local.path), None, user)
    if answered_in_process(name_or_path):  # vLLM took `sim/llama-8b` for a hub id and failed after ~30 s
        raise ServingError(
            f"{name_or_path!r} is answered inside agentscale, not by a server: use it in a graph as it is; "
            "serve local/<name>, a model folder, or a hub id"
        )
    problem = hub_id_problem(local.name) if check_hub else None
    if problem is not None:
        raise ServingError(problem)
    return Target(served_name or local.name, local.name, None, user)  # a hub id; vLLM downloads it


def _running_summary() -> str:
    """The servers recorded in the state file, with what each holds (for a not-enough-memory error)."""
    parts = []
    for entry in state.entries():
        held = group_rss_bytes(int(entry["pid"]))
        if held:
            parts.append(f"{entry['name']} ({held / 2**30:.1f} GiB, pid {entry['pid']})")
    return ", ".join(parts)


def _served_name(name_or_path: str) -> str:
    """The name a server of this model answers to; a name that resolves to nothing is taken as one
    (another process may serve a folder under that name)."""
    try:
        return resolve_target(name_or_path, None, None, check_hub=False).served_name
    except ServingError:
        return name_or_path.removeprefix("local/")


def materialize(target: Target, on_status: StatusCallback | None, cancelled: threading.Event | None = None) -> Target:
    """``target`` with a folder to serve: a bundled model is converted first (once per machine)."""
    if target.bundled is None:
        return target
    folder = ensure_bundled_model(target.bundled, on_status=on_status, cancelled=cancelled)
    return Target(target.served_name, str(folder), target.bundled, target.options)


@contextlib.contextmanager
def name_lock(served_name: str) -> Iterator[None]:
    """Held while this process looks for, or starts, servers of one model."""
    with _SERVERS.lock:
        lock = _SERVERS.name_locks.setdefault(served_name, threading.Lock())
    with lock:
        yield


def start_lock(
    name: str, cancelled: threading.Event | None = None, on_status: StatusCallback | None = None
) -> contextlib.AbstractContextManager[None]:
    """A file lock held across processes while ``name`` starts (one start per model at a time)."""
    waiting = waiting_notice(on_status, f"waiting for another process starting {name}")
    return file_lock(_start_lock_path(name), cancelled, waiting)


def cpu_starts_lock(
    device: str, cancelled: threading.Event | None = None, on_status: StatusCallback | None = None
) -> contextlib.AbstractContextManager[None]:
    """Held while servers start on a CPU: they start one at a time across processes, so each memory
    check sees what the others really hold (three sizing their KV caches at once once ran this
    machine out of memory). No lock on a GPU."""
    if device != "cpu":
        return contextlib.nullcontext()
    waiting = waiting_notice(on_status, "waiting for another server's start on this CPU")
    return file_lock(_start_lock_path("cpu-starts"), cancelled, waiting)


def _start_lock_path(name: str) -> Path:
    return cache_dir() / "locks" / f"server-{_slug(name)}.lock"


def with_room(target: Target, device: str, on_status: StatusCallback | None, *, servers: int = 1) -> Target:
    """``target`` in the dtype its bundled CPU server (``servers`` of them, replicas) fits in now
    (`memory_plan.room_for`: the CPU's default, or bfloat16 when only that fits); other targets as
    they are. Raises :class:`NotEnoughMemory` when nothing fits. Call it under `cpu_starts_lock`."""
    if device != "cpu" or target.bundled is None:
        return target
    model = BUNDLED[target.bundled]
    dtype = room_for(
        model, target.options.requested_dtype, running=_running_summary(), on_status=on_status, servers=servers
    )
    return replace(target, options=replace(target.options, dtype=dtype))


def known_server(
    served_name: str, *, recheck: bool = False, on_status: StatusCallback | None = None
) -> VllmEndpoint | None:
    """The server this process already uses for the model, if it is still alive (one owned by someone
    else is probed at most every few seconds, unless ``recheck``); ``on_status`` hears of one that
    died (it was started again without a word)."""
    with _SERVERS.lock:
        server = _SERVERS.by_name.get(served_name)
    if server is None:
        return None
    if server.process is not None:
        code = server.process.poll()
        if code is None:
            return server.endpoint
        if on_status:
            on_status(f"the server for {served_name} exited (code {code}; log: {server.log_path})")
        stop(server)  # it died: reap what is left of its process group, then start afresh
        return None
    if not recheck and time.monotonic() - server.checked_at < _RECHECK_S:
        return server.endpoint
    if serves(server.endpoint.port, served_name, server.endpoint.host, server.endpoint.api_key()):
        server.checked_at = time.monotonic()
        return server.endpoint
    _forget(server)  # its owner stopped it: start or find another
    return None


def find_running(served_name: str, port: int | None, host: str) -> VllmEndpoint | None:
    """A healthy server for the model on ``port``, in the state file, or on the default port."""
    if port is not None:
        recorded = state.entry_on(port)
        alive = recorded is not None and pid_alive(int(recorded["pid"]))  # read before the file drops the dead
        key_env = state.key_env_of(recorded) if recorded is not None and alive else None
        key = key_from(key_env, f"the server on port {port}")
        names = served_names(port, host, api_key=key)
        if names is None and key is not None and refuses_key(port, host, key):
            pid = int(recorded["pid"]) if recorded is not None else None
            raise _key_refused(served_name, f"{base_url(host, port)}/v1", pid, key_env)
        if names is not None and served_name in names:
            pid = int(recorded["pid"]) if recorded is not None and alive else None
            return _endpoint(port, served_name, pid=pid, host=host, api_key_env=key_env)
        if not port_free(host, port):
            what = f"a server for {sorted(names)}" if names else "another program"
            raise PortInUseError(
                f"port {port} is already in use by {what}; choose another port or leave it unset "
                "to let agentscale pick a free one"
            )
        return None
    locked_out: KeyNotHere | None = None  # a keyed server this process cannot reach: said if none else serves
    for entry in state.entries():
        pid, entry_port, entry_host = int(entry["pid"]), int(entry["port"]), state.host_of(entry)
        if entry.get("name") != served_name or not pid_alive(pid):
            continue
        endpoint = _endpoint(entry_port, served_name, pid=pid, host=entry_host, api_key_env=state.key_env_of(entry))
        try:
            key = endpoint.api_key()
        except KeyNotHere as exc:
            locked_out = locked_out or exc
            continue
        if serves(entry_port, served_name, entry_host, key):
            return endpoint
        if key is not None and refuses_key(entry_port, entry_host, key):  # a second server would double
            locked_out = locked_out or _key_refused(served_name, endpoint.api_base, pid, endpoint.api_key_env)
    shared = shared_port()
    if serves(shared, served_name, DEFAULT_HOST):
        return _endpoint(shared, served_name, pid=state.pid_on(shared))
    if locked_out is not None:  # rather than start a second server beside it
        raise locked_out
    return None


def _key_refused(served_name: str, where: str, pid: int | None, key_env: str | None) -> KeyNotHere:
    """A server of the model that answers this process's key with HTTP 401: said, where a second
    server of the model started beside it without a word (its memory twice over: 9.4 GiB for the 1.5B)."""
    started = f" (pid {pid})" if pid else ""
    return KeyNotHere(
        f"the server of {served_name} at {where}{started} refused the API key in ${key_env} (HTTP 401): "
        "set it to the key the server was started with"
    )


def _endpoint(
    port: int,
    served_name: str,
    pid: int | None,
    started_here: bool = False,
    host: str = DEFAULT_HOST,
    api_key_env: str | None = None,
) -> VllmEndpoint:
    return VllmEndpoint(f"{base_url(host, port)}/v1", served_name, port, pid, started_here, host, api_key_env)


def _remember_reused(endpoint: VllmEndpoint) -> VllmEndpoint:
    with _SERVERS.lock:
        _SERVERS.by_name[endpoint.model] = Server(endpoint, None, None, time.monotonic())
    return endpoint


def _forget(server: Server) -> None:
    with _SERVERS.lock:
        if _SERVERS.by_name.get(server.endpoint.model) is server:
            del _SERVERS.by_name[server.endpoint.model]
        if server in _SERVERS.foreground:
            _SERVERS.foreground.remove(server)


# ------------------------------------------------------------------------------------ start / stop


def start(
    target: Target,
    device: str,
    port: int | None,
    host: str,
    *,
    shared: bool,
    on_status: StatusCallback | None,
    extra_env: dict[str, str] | None = None,
    foreground: bool = False,
    api_key_env: str | None = None,
) -> Server:
    """Launch a server; ``extra_env`` adds to the launch recipe's environment (a replica's CPU cores),
    ``foreground`` keeps it out of the per-model table, which holds one server per model;
    ``api_key_env`` names the variable whose value vLLM then asks every request for (the key goes
    to vLLM in its environment, not on its command line nor in the log; the state file records the
    variable's name, so other processes reach the server with their own copy of the key)."""
    assert target.model is not None
    if port is None:
        port = free_port(host)
    elif not port_free(host, port):
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
    # what the caller adds (a replica's own cores) counts as set by the user: no default beside it
    argv, env_extra = build_launch(config, environ={**os.environ, **(extra_env or {})})
    env_extra.update(extra_env or {})
    log_path = cache_dir() / "logs" / f"vllm-{_slug(target.served_name)}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        header = f"# agentscale: {' '.join(argv)}\n# env: {json.dumps(env_extra)}\n"
        log.write(header.encode())
        log.flush()
        if api_key_env is None and os.environ.get(API_KEY_ENV):  # vLLM would ask for it: record where it is
            api_key_env = API_KEY_ENV
        key = key_from(api_key_env, f"{target.served_name} on port {port}")
        process = spawn(argv, {**os.environ, **env_extra, **({API_KEY_ENV: key} if key else {})}, log)
    endpoint = _endpoint(
        port, target.served_name, pid=process.pid, started_here=True, host=host, api_key_env=api_key_env
    )
    server = Server(endpoint, process, log_path, time.monotonic())
    with _SERVERS.lock:
        if foreground:
            _SERVERS.foreground.append(server)
        else:
            _SERVERS.by_name[target.served_name] = server
    _install_exit_hooks()
    state.add(
        {
            "name": target.served_name,
            "port": port,
            "host": host,  # other processes reach it there (an interface's address: only there)
            "api_key_env": api_key_env,  # the variable's name, never the key
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


def _wait_ready(
    server: Server, timeout_s: float, on_status: StatusCallback | None, cancelled: threading.Event | None = None
) -> None:
    """Block until the server lists its model; stop it and raise with its log tail if it cannot, or
    when ``cancelled`` is set (the caller gave up)."""
    assert server.process is not None and server.log_path is not None
    name, port = server.endpoint.model, server.endpoint.port
    started = last_status = time.monotonic()
    try:
        while True:
            if cancelled is not None and cancelled.is_set():
                raise Cancelled(f"{name}'s start was given up")
            code = server.process.poll()
            if code is not None:
                raise ServerStartError(
                    f"the vLLM server for {name} exited with code {code} while starting; "
                    f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
                )
            if serves(port, name, server.endpoint.host, server.endpoint.api_key()):
                if on_status:
                    on_status(f"{name} ready at {server.endpoint.api_base} in {time.monotonic() - started:.1f}s")
                return
            elapsed = time.monotonic() - started
            if elapsed > timeout_s:
                raise ServerStartError(
                    f"the vLLM server for {name} was not ready after {timeout_s:.0f}s (a slow machine may need "
                    f"more: {START_TIMEOUT_ENV}=SECONDS, or serve --start-timeout); "
                    f"last lines of {server.log_path}:\n{_log_tail(server.log_path)}"
                )
            if on_status and time.monotonic() - last_status >= _STATUS_EVERY_S:
                last_status = time.monotonic()
                on_status(f"loading {name} ({elapsed:.0f}s)")
            time.sleep(_POLL_S)
    except BaseException:  # also Ctrl-C while loading: never leave a half-started server behind
        stop(server)
        raise


_ERROR_LINE = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b: ")
# a log record below ERROR that names an exception (vLLM's ulimit warning cites "OSError: [Errno 24]")
_NOTICE_LINE = re.compile(r"\b(?:DEBUG|INFO|WARNING)\b")


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The log's last lines, after its first error line when that is not among them: an engine core
    or worker that fails is reported last by the API server's wrapper ("Engine core initialization
    failed. See root cause above."), the cause a hundred lines up (a damaged weights file)."""
    try:
        all_lines = _log_end(path)
    except OSError as exc:
        return f"(log unreadable: {exc})"
    tail = all_lines[-lines:]
    first = _first_error(all_lines)
    if first is None or first in tail:
        return "\n".join(tail)
    return "\n".join([f"first error: {first.strip()}", "...", *tail])


def first_error_line(path: Path) -> str | None:
    """The first error a server's log names (its last MB), None when it names none or is unreadable:
    `serve` streams the whole log, and its root cause scrolls a hundred lines above the end."""
    try:
        first = _first_error(_log_end(path))
    except OSError:
        return None
    return first.strip() if first is not None else None


def _log_end(path: Path) -> list[str]:
    """The lines of the log's last MB (a server's log grows with every request it logs)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 1_048_576))
        return handle.read().decode("utf-8", errors="replace").splitlines()


def _first_error(lines: list[str]) -> str | None:
    return next((line for line in lines if _ERROR_LINE.search(line) and not _NOTICE_LINE.search(line)), None)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def stop(server: Server) -> None:
    """Forget a server this process started, stop its process group and drop its state entry."""
    _forget(server)
    if server.process is not None:
        terminate(server.process)
        state.remove(server.process.pid)


def _install_exit_hooks() -> None:
    with _SERVERS.lock:
        first, _SERVERS.atexit_registered = not _SERVERS.atexit_registered, True
    if first:
        atexit.register(stop_all)
    install_signal_handlers()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    stop_all()
    raise SystemExit(128 + signum)  # unwinds like an exit, so other cleanup and atexit hooks run
