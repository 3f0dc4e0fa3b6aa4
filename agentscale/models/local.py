"""Routes `local/<name>`: models agentscale serves itself with vLLM, started on first use.

The endpoint registry (`models/endpoints.py`) imports this module the first time a `local/` route
resolves. Every node of one model goes through one server, so vLLM batches their concurrent calls;
the server is reused if it (or one the user started with `agentscale serve`) is already up, and
stopped when the process exits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentscale.models.endpoints import Endpoint
from agentscale.models.serving import aensure_server

if TYPE_CHECKING:
    from agentscale.models.registry import ResolvedModel

_status_listeners: list[Callable[[str], None]] = []


def on_status(listener: Callable[[str], None]) -> None:
    """Be told what a server start is doing (converting the model, waiting for readiness, ...)."""
    _status_listeners.append(listener)


def _announce(message: str) -> None:
    for listener in _status_listeners:
        listener(message)


# A CPU server batching 16 requests writes ≈2 tokens/s to each: a 512-token answer takes minutes.
# Timing out at the gateway's 120 s would abort the request (vLLM drops it) and retry it from scratch,
# so a loaded machine would redo work forever; the server's health is watched separately.
LOCAL_TIMEOUT_S = 900.0


async def resolve_endpoint(model: ResolvedModel) -> Endpoint:
    """Where a `local/` route's calls go: its vLLM server (started now if need be)."""
    return await _endpoint(model, recheck=False)


async def _endpoint(model: ResolvedModel, *, recheck: bool) -> Endpoint:
    """`recheck`: after a refused connection, probe a reused server now rather than trusting the last
    health check (a few seconds old), so the retry reaches a replacement, or a server started anew."""
    served = await aensure_server(model.route, on_status=_announce, recheck=recheck)
    return Endpoint(
        served.litellm_model,
        served.api_base,
        served.api_key(),  # a server `agentscale serve --api-key-env` started asks every call for it
        timeout_s=LOCAL_TIMEOUT_S,
        refresh=functools.partial(_endpoint, model, recheck=True),
    )
