"""`agentscale serve`: one vLLM server, or several replicas of one model, run in the foreground.

Replicas exist to test multi-endpoint routes (`api_base: [...]`) on one machine: they listen on
consecutive ports (or given ones) and, on CPU, each replica's engine is pinned to its own share of
the cores, since vLLM-CPU would otherwise bind every engine to the same first core. The servers are
started together, their logs streamed (prefixed per replica), and the api_base list printed once all
are ready. Everything started here is stopped on Ctrl-C, SIGTERM/SIGHUP, or when this process dies
(the parent-death signal of :mod:`agentscale.models.serving.processes`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Any, BinaryIO, TextIO

from agentscale.errors import ServingError
from agentscale.models.serving.engine import (
    CPU_BIND_ENV,
    DEFAULT_HOST,
    KV_CACHE_ENV,
    EngineOptions,
    available_memory_bytes,
    cpu_id_list,
    kv_cache_gib,
    require_engine,
    usable_cpus,
)
from agentscale.models.serving.health import port_free, serves
from agentscale.models.serving.processes import signal_group
from agentscale.models.serving.server import (
    START_TIMEOUT_ENV,
    PortInUseError,
    Server,
    Target,
    VllmEndpoint,
    cpu_starts_lock,
    find_running,
    first_error_line,
    install_signal_handlers,
    known_server,
    materialize,
    name_lock,
    resolve_target,
    shared_port,
    start,
    start_lock,
    start_timeout_s,
    stop,
    with_room,
)

_POLL_S = 0.2


def replica_ports(replicas: int, *, first_port: int, ports: Sequence[int] | None = None) -> list[int]:
    """``ports`` if given (one per replica, distinct), else ``replicas`` consecutive ports from ``first_port``."""
    if replicas < 1:
        raise ServingError(f"--replicas must be at least 1 (got {replicas})")
    if ports:
        if len(ports) != replicas:
            raise ServingError(f"{len(ports)} port(s) given for {replicas} replica(s); give one port per replica")
        if len(set(ports)) != len(ports):
            raise ServingError(f"ports {list(ports)} repeat a port; each replica needs its own")
        chosen = list(ports)
    else:
        chosen = [first_port + i for i in range(replicas)]
    if max(chosen) > 65535 or min(chosen) < 1:
        raise ServingError(f"ports {chosen} are not all within 1..65535")
    return chosen


def replica_env(
    index: int,
    replicas: int,
    *,
    device: str,
    cpus: Sequence[int] | None = None,
    kv_cache_space_gib: int | None = None,
    mem_available_bytes: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """What replica ``index`` adds to its launch environment on CPU: the cores its engine binds and
    its share of the KV cache. A single server or a GPU gets nothing (the launch recipe stands).

    Cores: of the C CPUs this process may use (``cpus``, default `usable_cpus`: a container's cpuset,
    not the host's ids), with N ≤ C replicas replica i binds the i-th of N near-equal slices of
    them in id order; with more
    replicas than cores they take one core each in turn. KV cache: each server would size its own from the same
    free memory (a quarter of it) and N of them run the machine out of memory (seen with three at
    once: the kernel killed a worker), so each gets 1/N of that, at least 1 GiB. A fixed
    ``kv_cache_space_gib`` (the bundled model's recipe) and the user's own variables are kept.
    """
    env_in = os.environ if environ is None else environ
    if device != "cpu" or replicas == 1:
        return {}
    env: dict[str, str] = {}
    if CPU_BIND_ENV not in env_in:
        ids = usable_cpus() if cpus is None else sorted(set(cpus))
        cores = len(ids)
        if replicas > cores:
            env[CPU_BIND_ENV] = str(ids[index % cores])
        else:
            env[CPU_BIND_ENV] = cpu_id_list(ids[index * cores // replicas : (index + 1) * cores // replicas])
    if KV_CACHE_ENV not in env_in and kv_cache_space_gib is None:
        mem = available_memory_bytes() if mem_available_bytes is None else mem_available_bytes
        env[KV_CACHE_ENV] = str(max(1, kv_cache_gib(mem) // replicas))
    return env


def route_snippet(endpoints: Sequence[VllmEndpoint]) -> str:
    """The `models:` entry to paste into a graph or space YAML (with the key's variable, when the
    servers ask for a key)."""
    bases = ", ".join(f'"{e.api_base}"' for e in endpoints)
    api_base = bases if len(endpoints) == 1 else f"[{bases}]"
    key = f", api_key_env: {endpoints[0].api_key_env}" if endpoints[0].api_key_env else ""
    return f"{{model: {endpoints[0].litellm_model}, api_base: {api_base}{key}}}"


def serve_foreground(
    name_or_path: str,
    *,
    port: int | None = None,
    host: str = DEFAULT_HOST,
    options: EngineOptions | None = None,
    served_model_name: str | None = None,
    timeout_s: float | None = None,
    out: TextIO | None = None,
    replicas: int = 1,
    ports: Sequence[int] | None = None,
    on_ready: Callable[[list[VllmEndpoint]], None] | None = None,
    api_key_env: str | None = None,
) -> int:
    """Run ``replicas`` servers until Ctrl-C, streaming their logs to ``out`` (stderr).

    The first (or only) one listens on ``port``, else the shared port (`AGENTSCALE_VLLM_PORT`, else
    8000), so other processes find it; servers are recorded as shared in the state file. ``on_ready``
    gets the endpoints once all answer. Returns 0 after Ctrl-C or when a single server for the model
    already runs there, 1 if a server failed or was not ready within ``timeout_s`` (default:
    `start_timeout_s()`). ``api_key_env``: the variable holding a key every request must bear.
    """
    stream = out if out is not None else sys.stderr
    timeout_s = start_timeout_s() if timeout_s is None else timeout_s

    def say(message: str) -> None:
        print(f"agentscale: {message}", file=stream, flush=True)

    chosen = replica_ports(replicas, first_port=shared_port() if port is None else port, ports=ports)
    target = resolve_target(name_or_path, options, served_model_name)
    servers: list[Server] = []
    # the start locks `_run` takes are let go once the servers answer, or after a failed one is stopped
    with _on_sigint(signal.default_int_handler), contextlib.ExitStack() as starting:
        try:
            return _run(
                target, chosen, replicas, host, timeout_s, stream, say, on_ready, servers, starting, api_key_env
            )
        except KeyboardInterrupt:
            say("stopping")
            return 0
        finally:
            # a second Ctrl-C (or SIGTERM, which the CLI turns into one) must not cut the stop short
            with _on_sigint(signal.SIG_IGN, also=(signal.SIGTERM,)):
                _stop_servers(servers)


@contextlib.contextmanager
def _on_sigint(
    handler: Callable[[int, FrameType | None], Any] | int, also: tuple[signal.Signals, ...] = ()
) -> Iterator[None]:
    """Handle SIGINT (and the signals in ``also``) with ``handler`` for the block (main thread only;
    elsewhere nothing changes).

    Needed for Ctrl-C to stop `agentscale serve` at all when the process started with SIGINT ignored
    (a background job of a shell without job control, nohup, some CI runners): Python then installs
    no KeyboardInterrupt handler, the signal is dropped, and the servers run on.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, *also)}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)


def _stop_servers(servers: list[Server]) -> None:
    for server in servers:  # all at once: each takes seconds to stop
        assert server.process is not None
        signal_group(server.process.pid, signal.SIGTERM)
    for server in servers:
        stop(server)


def _run(
    target: Target,
    chosen: list[int],
    replicas: int,
    host: str,
    timeout_s: float,
    stream: TextIO,
    say: Callable[[str], None],
    on_ready: Callable[[list[VllmEndpoint]], None] | None,
    servers: list[Server],
    starting: contextlib.ExitStack,
    api_key_env: str | None,
) -> int:
    """Start the servers (appending each to ``servers`` as it starts) and follow them.

    The start locks, entered on ``starting``, are held until every server answers, as
    `ensure_server` holds them: a `run` started meanwhile found no server (one still loading does not
    answer), took the released lock and started a second one, and the next start's memory check did
    not count what these load."""
    starting.enter_context(name_lock(target.served_name))
    # first: a start of this model under way in another process holds the port before its server
    # answers, and was taken for "another program" (or its port, bound later, failed our start)
    starting.enter_context(start_lock(target.served_name, on_status=say))
    if replicas == 1:
        try:
            found = known_server(target.served_name) or find_running(target.served_name, chosen[0], host)
        except PortInUseError as exc:  # its hint "leave it unset" is `run`'s: serve's default is a fixed port
            raise PortInUseError(f"{str(exc).split(';')[0]}; give another with --port") from None
        if found is not None and found.api_key_env != api_key_env:  # it would be taken as asking for the key
            asks = f"the key in ${found.api_key_env}" if found.api_key_env else "no API key"
            raise ServingError(
                f"{target.served_name} is already served at {found.api_base}, asking for {asks}; stop it first"
            )
        if found is not None:
            say(f"{target.served_name} is already served at {found.api_base}")
            if on_ready is not None:  # `--json` printed nothing: a script learns where it is served
                on_ready([found])
            return 0
    taken = [port for port in chosen if not port_free(host, port)]
    if taken:
        raise PortInUseError(f"port(s) {', '.join(map(str, taken))} already in use; choose other ports")
    engine = require_engine()
    target = materialize(target, say)
    starting.enter_context(cpu_starts_lock(engine.device, on_status=say))
    target = with_room(target, engine.device, say, servers=replicas)
    for index, port in enumerate(chosen):
        env = replica_env(index, replicas, device=engine.device, kv_cache_space_gib=target.options.kv_cache_space_gib)
        server = start(
            target,
            engine.device,
            port,
            host,
            shared=True,
            on_status=say,
            extra_env=env,
            foreground=True,
            api_key_env=api_key_env,
        )
        servers.append(server)
    install_signal_handlers()
    return _follow(servers, target.served_name, host, timeout_s, stream, say, on_ready, starting.close)


def _follow(
    servers: list[Server],
    served_name: str,
    host: str,
    timeout_s: float,
    stream: TextIO,
    say: Callable[[str], None],
    on_ready: Callable[[list[VllmEndpoint]], None] | None,
    release_start: Callable[[], None] = lambda: None,
) -> int:
    """Stream the logs and watch the servers until Ctrl-C, a server exit, or a start timeout;
    ``release_start`` is called once all of them answer."""
    ready = [False] * len(servers)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        logs = [
            _LogTail(stack.enter_context(open(s.log_path or "", "rb")), i, len(servers)) for i, s in enumerate(servers)
        ]
        while True:
            for index, server in enumerate(servers):
                assert server.process is not None
                logs[index].copy_to(stream)
                code = server.process.poll()
                if code is not None:
                    logs[index].copy_to(stream, final=True)
                    cause = first_error_line(server.log_path) if server.log_path else None
                    said_cause = f" (first error in its log: {cause})" if cause else ""
                    say(f"server on port {server.endpoint.port} exited with code {code}{said_cause}; stopping")
                    return 1  # it ends on its own only by failing (a dead engine core exits 0): Ctrl-C stops elsewhere
                if not ready[index] and serves(server.endpoint.port, served_name, host, server.endpoint.api_key()):
                    ready[index] = True
                    if all(ready):
                        release_start()
                        _announce(servers, served_name, time.monotonic() - started, say)
                        if on_ready is not None:
                            on_ready([s.endpoint for s in servers])
            if not all(ready) and time.monotonic() - started > timeout_s:
                say(f"not ready after {timeout_s:.0f}s (--start-timeout or {START_TIMEOUT_ENV} gives more); stopping")
                return 1
            time.sleep(_POLL_S)


def _announce(servers: list[Server], served_name: str, seconds: float, say: Callable[[str], None]) -> None:
    endpoints = [s.endpoint for s in servers]
    where = endpoints[0].api_base if len(endpoints) == 1 else f"{len(endpoints)} replicas"
    say(
        f"serving {served_name} at {where} (litellm model {endpoints[0].litellm_model}), ready in {seconds:.0f}s; "
        "Ctrl-C to stop"
    )
    say(f"models: entry for a graph or space YAML: {route_snippet(endpoints)}")


class _LogTail:
    """New lines of one server's log, prefixed with the replica number when there are several."""

    def __init__(self, handle: BinaryIO, index: int, count: int) -> None:
        self.handle = handle
        self.prefix = f"[replica {index}] " if count > 1 else ""
        self.partial = ""

    def copy_to(self, stream: TextIO, *, final: bool = False) -> None:
        chunk = self.handle.read()
        if not chunk and not final:
            return
        text = self.partial + chunk.decode("utf-8", errors="replace")
        lines = text.split("\n")
        self.partial = "" if final else lines.pop()
        if lines and lines[-1] == "" and final:
            lines.pop()
        if lines:
            stream.write("".join(f"{self.prefix}{line}\n" for line in lines))
            stream.flush()
