"""Where a route's calls go: the `Endpoint` a route resolves to and the registry of route prefixes
that decide it themselves (`local/` servers, `sim/`, plug-ins, tests).

Kept apart from :mod:`agentscale.models.gateway` so that checking a route (`validate`, the CLI's
start) can ask whether a prefix is ours without importing the gateway's store, cache and litellm.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentscale.errors import ModelCallError
from agentscale.models.registry import ResolvedModel
from agentscale.plugins import load_plugins


@dataclass(frozen=True)
class Endpoint:
    """Where a route is actually sent: the litellm model string, base URL and key.

    `replicas` (two or more base URLs, `api_base` then unused) sends calls through a load-balancing
    litellm Router instead (:mod:`agentscale.models.replicas`).
    """

    litellm_model: str
    api_base: str | None = None
    api_key: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    replicas: tuple[str, ...] = ()
    timeout_s: float | None = None  # overrides the gateway's per-call timeout (a local CPU server is slow, not dead)
    # where to look again when the endpoint stops accepting connections (a local server that died or
    # was stopped by its owner): the retry then goes to its replacement instead of the dead port
    refresh: Callable[[], Awaitable[Endpoint]] | None = field(default=None, compare=False)

    @property
    def where(self) -> str | None:
        return ", ".join(self.replicas) if self.replicas else self.api_base


EndpointResolver = Callable[[ResolvedModel], Awaitable[Endpoint]]
_RESOLVERS: dict[str, EndpointResolver] = {}
# Local models are served by this layer; their module is imported on first use only, so a graph of
# hosted models never pays for vLLM's supervision. Other prefixes register themselves (`sim/`, a
# plug-in imported on the first route this layer does not know: `agentscale.plugins`).
_BUILTIN_RESOLVERS = {"local/": "agentscale.models.local"}


# Prefixes whose resolver starts a server: a graph resolves them before its run (see `Graph.arun`).
_SERVER_PREFIXES = {"local/"}


def register_endpoint_resolver(
    prefix: str, resolver: EndpointResolver, *, starts_server: bool = False, replace: bool = True
) -> None:
    """Let a route prefix (`sim/`, a test's) decide where its calls go; `starts_server`: resolving
    starts a server, which a graph then does before its run rather than inside a question;
    `replace=False` (plug-ins) keeps a resolver registered before."""
    if not replace and prefix in _RESOLVERS:
        return
    _RESOLVERS[prefix] = resolver
    if starts_server:
        _SERVER_PREFIXES.add(prefix)


def _resolver_for(prefix: str) -> EndpointResolver | None:
    if prefix not in _RESOLVERS:
        load_plugins()
    if prefix not in _RESOLVERS and prefix in _BUILTIN_RESOLVERS:
        module = importlib.import_module(_BUILTIN_RESOLVERS[prefix])
        _RESOLVERS.setdefault(prefix, module.resolve_endpoint)
    return _RESOLVERS.get(prefix)


def _prefix(route: str) -> str:
    return route.split("/", 1)[0] + "/"


def has_resolver(route: str) -> bool:
    """Whether a registered resolver (`sim/`, a plug-in's, a test's) decides where the route's calls
    go, so its prefix is agentscale's to know, not litellm's."""
    return _resolver_for(_prefix(route)) is not None


def starts_server(route: str) -> bool:
    """Whether resolving the route's endpoint starts a server (`local/` models)."""
    load_plugins()
    return _prefix(route) in _SERVER_PREFIXES


async def resolve_endpoint(model: ResolvedModel) -> Endpoint:
    resolver = _resolver_for(_prefix(model.route))
    if resolver is not None:
        return await resolver(model)
    api_key = os.environ.get(model.api_key_env) if model.api_key_env else None
    if model.api_key_env and api_key is None:
        raise ModelCallError(f"environment variable {model.api_key_env} (api_key_env) is not set")
    if isinstance(model.api_base, tuple):
        if len(model.api_base) == 1:  # one endpoint written as a list: no Router needed
            return Endpoint(model.route, model.api_base[0], api_key)
        return Endpoint(model.route, None, api_key, replicas=model.api_base)
    return Endpoint(model.route, model.api_base, api_key)
