"""Shared fixtures: a scripted OpenAI-compatible server over real HTTP and a fresh database per test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The CLI's consoles take their width when first imported: output to a file gets 160 columns, and the
# tests read tables at that width. pytest-xdist's workers start with COLUMNS=80 in their environment,
# which wrapped table cells there; tests that want a width set it themselves.
os.environ.pop("COLUMNS", None)

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentscale import Gateway, GatewaySettings, Graph, Store
from agentscale.testing import ScriptedServer


@pytest.fixture(scope="session")
def _server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted(_server: ScriptedServer) -> Iterator[ScriptedServer]:
    """The scripted server, with rules, recorded requests and latency reset for each test."""
    _server.reset()
    _server.latency_s = 0.0
    yield _server
    _server.reset()
    _server.latency_s = 0.0


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "test.db")


@pytest.fixture
def gateway(store: Store) -> Gateway:
    return Gateway(store, GatewaySettings(max_retries=2, backoff_s=0.01, max_backoff_s=0.02, timeout_s=10))


def with_default_sigint() -> None:
    """`preexec_fn` of a child a test stops with SIGINT (Ctrl-C): SIGINT at its default. A suite started
    as a background job of a shell without job control runs with SIGINT ignored, which its children
    inherit (Python then installs no KeyboardInterrupt handler): the child ran on to its end."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def graph_yaml(api_base: str, body: str, *, model: str = "scripted") -> str:
    """A graph text whose alias `m` points at the scripted server."""
    return f'models:\n  m: {{model: hosted_vllm/{model}, api_base: "{api_base}"}}\n' + body


@pytest.fixture
def make_graph(scripted: ScriptedServer, gateway: Gateway):  # type: ignore[no-untyped-def]
    def build(body: str, **kwargs: object) -> Graph:
        return Graph.from_yaml(graph_yaml(scripted.api_base, body), gateway=gateway, **kwargs)

    return build


@pytest.fixture
def in_a_child() -> Callable[[str], None]:
    """Run a Python program in a child process that must finish within a minute. For parsing that
    once backtracked for minutes on a degenerate input: a regression fails on the timeout instead of
    holding the suite (CPython's regex engine keeps the interpreter lock, so a thread cannot stop it)."""

    def run(program: str) -> None:
        subprocess.run([sys.executable, "-c", program], check=True, timeout=60)

    return run
