"""Serving local models with vLLM: start on demand, reuse, health-check, replicas, the foreground.

Everything outside this package goes through the names below (an import contract keeps it so):

- :func:`ensure_server` / :func:`aensure_server` return a ready server for a model (bundled name,
  folder or hub id), reusing one this process, another agentscale process (the state file in the user
  cache) or the user (the shared port) already runs; :func:`find_server` never starts one;
  :func:`stop_server`, :func:`stop_all` and :func:`install_signal_handlers` make sure nothing this
  process started outlives it.
- :func:`serve_foreground` is `agentscale serve`: one server or several replicas until Ctrl-C,
  optionally asking every request for an API key held in a variable.

Modules: `engine` (which vLLM is installed, the launch command line), `server` (start, reuse,
stop), `health` (probes), `state` (the state file), `processes` (spawning with a parent-death
signal, process groups), `memory_plan` (will a CPU server fit), `foreground` (`agentscale serve`).
"""

from agentscale.models.serving.engine import EngineMissingError, EngineOptions
from agentscale.models.serving.foreground import serve_foreground
from agentscale.models.serving.memory_plan import NotEnoughMemory
from agentscale.models.serving.processes import group_rss_bytes
from agentscale.models.serving.server import (
    PortInUseError,
    ServerStartError,
    VllmEndpoint,
    aensure_server,
    ensure_server,
    find_server,
    install_signal_handlers,
    stop_all,
    stop_server,
)

__all__ = [
    "EngineMissingError",
    "EngineOptions",
    "NotEnoughMemory",
    "PortInUseError",
    "ServerStartError",
    "VllmEndpoint",
    "aensure_server",
    "ensure_server",
    "find_server",
    "group_rss_bytes",
    "install_signal_handlers",
    "serve_foreground",
    "stop_all",
    "stop_server",
]
