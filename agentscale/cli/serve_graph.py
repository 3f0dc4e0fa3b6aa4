"""`agentscale serve-graph`: serve a graph behind an OpenAI-compatible endpoint."""

from __future__ import annotations

import contextlib
import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agentscale.cli._console import err
from agentscale.cli._options import (
    DbOption,
    NoCacheOption,
    api_key_of,
    checked_graph_text,
    make_gateway,
    unset_api_keys,
    warn_if_open,
)
from agentscale.errors import AgentScaleError
from agentscale.serve import DEFAULT_MAX_BODY_BYTES

if TYPE_CHECKING:
    import uvicorn

    from agentscale.serve.app import Admission

GRACE_S = 30  # how long a stop waits for the requests in flight before it stops them


def serve_graph_command(
    graph_file: Annotated[Path, typer.Argument(help="Graph YAML file.", show_default=False)],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8080,
    api_key_env: Annotated[
        str | None,
        typer.Option("--api-key-env", help="Environment variable holding the bearer key clients must send."),
    ] = None,
    max_concurrency: Annotated[
        int,
        typer.Option(
            help="Graph runs in flight at once; up to 256 more requests wait for a turn, the rest get a 429 "
            "with Retry-After (their model calls also wait on each model's own limit: max_concurrency in the "
            "graph's models, 16 calls by default).",
            min=1,
        ),
    ] = 32,
    max_body_kb: Annotated[
        int, typer.Option(help="Largest accepted request body, in KiB.", min=1)
    ] = DEFAULT_MAX_BODY_BYTES // 1024,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
    no_access_log: Annotated[
        bool,
        typer.Option(
            "--no-access-log",
            help="Print no line per request (by default each request prints its client, path, status, time, "
            "and the run that answered or the error the client got, on stderr).",
        ),
    ] = False,
) -> None:
    """Serve a graph as an OpenAI-compatible model named after the graph.

    Example:

      agentscale serve-graph best.yaml --port 8080 \\
          --api-key-env AGENTSCALE_API_KEY

    then any OpenAI client with base_url=http://127.0.0.1:8080/v1 and model="<graph name>". A question
    asked again is answered from the response cache (the same answer, no call paid): --no-cache to
    sample afresh each time. Every answered request is a stored run (agentscale runs list).
    """
    import uvicorn

    from agentscale.graphs.simulated import spec_is_simulated
    from agentscale.memory.handbook import check_usable
    from agentscale.models.litellm_loader import get_litellm
    from agentscale.runtime.graph import Graph
    from agentscale.serve.app import create_app

    api_key = api_key_of(api_key_env)
    text = checked_graph_text(graph_file)
    graph = Graph.from_yaml(text, gateway=make_gateway(db, no_cache), source=str(graph_file))
    if graph.spec.memory is not None and graph.store is not None:  # every request got a bare 500
        check_usable(graph.store, graph.spec.memory)
    app = create_app(
        graph,
        api_key=api_key,
        max_body_bytes=max_body_kb * 1024,
        max_concurrency=max_concurrency,
        access_log=None if no_access_log else _print_access_line,
    )
    listening = _listening_sockets(host, port)
    # litellm's import takes seconds: here, before the "serving" line, not in the first request
    # (8.5 s where the next took 0.03 s; a client with a short timeout lost it). Clients that connect
    # meanwhile wait in the socket's backlog.
    get_litellm()
    auth = f", bearer key from ${api_key_env}" if api_key_env else ", no auth"
    simulated = " · SIMULATED models (sim/): no model's answers" if spec_is_simulated(graph.spec) else ""
    err.print(
        f"serving graph {graph.name!r} at http://{host}:{port}/v1 (model {graph.name!r}{auth}){simulated}; Ctrl-C stops"
    )
    if api_key is None:
        warn_if_open(host, "runs the graph on your models; give --api-key-env VAR")
    for note in unset_api_keys(graph.spec.models):  # validate says so; here every uncached question got a 502
        err.print(f"[yellow]warning:[/] {escape(note)}: its calls will fail", markup=True)
    # The app has no lifespan; uvicorn ran the protocol anyway and logged its task's cancellation as
    # a traceback when a second Ctrl-C skipped the graceful shutdown.
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=GRACE_S, lifespan="off"
    )
    server = _announcing_server(config, app.state.admission)
    _serve_until_stopped(server, listening)


def _print_access_line(line: str) -> None:
    """A request's line on stderr, after the local time (an operator matches it with a client's report)."""
    err.print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")  # no markup: the line holds a client's text


def _announcing_server(config: uvicorn.Config, admission: Admission) -> uvicorn.Server:
    """uvicorn's server, saying at the first Ctrl-C (or SIGTERM) what the graceful stop waits for:
    it waited up to 30 s in silence with requests in flight, which read as a hang, and a second
    Ctrl-C (which stops at once) was nowhere said. The graph runs going on get the grace; those
    still waiting for a turn are answered their 503 at once (they waited the grace out for it)."""
    import uvicorn

    class Announcing(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            first = not self.should_exit
            super().handle_exit(sig, frame)
            if not first:
                return
            waiting = admission.waiting
            admission.stop_waiting()
            if running := admission.in_flight - waiting:
                err.print(
                    f"stopping: {running} request(s) in flight get up to {GRACE_S} s to finish; Ctrl-C again stops "
                    "them now (their runs are stored interrupted)"
                )
            if waiting:
                err.print(f"stopping: {waiting} request(s) waiting for a turn were answered 503 server_stopping")

    return Announcing(config)


def _serve_until_stopped(server: uvicorn.Server, listening: list[socket.socket]) -> None:
    """Run uvicorn until Ctrl-C or SIGTERM, exit 0 (uvicorn.run's way).

    While serving, uvicorn takes both signals itself (a graceful shutdown) and, on its way out,
    raises the signal it took again to the handler it found. The CLI's SIGTERM handler (agentscale
    handles SIGTERM as Ctrl-C) then stopped a loop that was already closing: with SIGINT ignored (a
    background job of a script) every `kill` ended in "Event loop is closed" tracebacks, exit 1. Here
    SIGTERM stops the server before uvicorn takes it (startup) and is done once uvicorn has."""

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        if not server.should_exit:  # uvicorn has not taken a stop yet: stop as Ctrl-C would
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=listening)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _listening_sockets(host: str, port: int) -> list[socket.socket]:
    """The sockets the server listens on, bound here, one per address `host` resolves to (as asyncio
    binds them: `localhost` may be ::1 and 127.0.0.1, "" every interface): a taken port or an
    unknown host is an error naming it, before the "serving" line (uvicorn printed that line, then
    its own error, and exited 3); the same sockets are handed to uvicorn, so nothing can take the
    port in between."""
    try:
        addresses = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AgentScaleError(f"--host {host}: {exc.strerror}") from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            listening = socket.socket(family, kind, proto)
            bound.append(listening)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds its own
            if family == socket.AF_INET6:  # else it would take the IPv4 port too, and 0.0.0.0 fail to bind
                listening.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listening.bind(address)
            listening.listen(2048)  # uvicorn's default backlog
            listening.set_inheritable(True)
    except OSError as exc:
        for listening in bound:
            listening.close()
        raise AgentScaleError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None
    return bound
