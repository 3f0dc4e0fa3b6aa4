"""Routes served by several endpoints (`api_base: [url1, url2, ...]`): one litellm Router per set.

Every endpoint of a set serves the same model (vLLM replicas, typically), so a call may go to any of
them. litellm's Router picks one per call with the ``least-busy`` strategy: it sends each call to the
endpoint with the fewest calls in flight, which keeps replicas' batches (and so their per-token
latency) even, and, because the gateway admits at most ``limit × endpoints`` calls to a set, keeps
every healthy endpoint at or under its own ``max_concurrency``. A random shuffle would balance only on
average, and could queue a burst on one replica while another idles.

Failover is the Router's: an endpoint whose call fails with a connection error, a timeout, 429 or
5xx is put in cooldown for :data:`COOLDOWN_S` at its first failure (``allowed_fails=0``: a refused
connection is evidence enough), and the same call is retried at once on another endpoint, each
endpoint at most once per attempt. The gateway's own retry loop (backoff, attempt count) wraps that.
When every endpoint is cooling down the Router refuses to pick: unless the last failure was a
refused connection (the endpoints are down, not busy: waiting would only delay the error), the
attempt then waits until the first of them cools off and asks once more (the gateway's backoff,
0.5-3.5 s in all, is shorter than the cooldown, so its retries had all been refused without reaching
an endpoint: a one-off 429 on both replicas lost the call that a single endpoint survives). Refused, that is reported as
:class:`EndpointsCoolingDown`, naming the endpoints and the last failure seen, so "both replicas are
down" reads as such rather than as litellm's generic "no deployments available".

Routers are built once per distinct endpoint set and process (:func:`shared_routers`) and reused, so
cooldowns and in-flight counts are shared by every call of every gateway (a Router works from any
event loop). Keys are never logged: the Router holds them in memory only, like a direct litellm call
would.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from agentscale.models._reply import refused_connection
from agentscale.models.litellm_loader import get_litellm

ROUTING_STRATEGY = "least-busy"
COOLDOWN_S = 5.0
_COOLED_MARGIN_S = 0.05  # asked again this long after the cooldown's end, so that it has ended


class EndpointsCoolingDown(Exception):
    """Every endpoint of a set failed recently and is cooling down; retryable once one cools off."""


@dataclass
class _RouterEntry:
    router: Any
    api_bases: tuple[str, ...]
    last_error: str | None = None
    failed_at: float | None = None  # time.monotonic() of the last failure seen
    down: bool = False  # that failure was a refused connection

    def cooling_left_s(self) -> float:
        """How long until the endpoints cool off: from the last failure seen (a failure the Router
        failed over from is not seen; then this waits longer than needed, never shorter)."""
        if self.failed_at is None:
            return COOLDOWN_S
        return min(COOLDOWN_S, max(0.0, self.failed_at + COOLDOWN_S - time.monotonic())) + _COOLED_MARGIN_S


class ReplicaRouters:
    """Routers, one per (litellm model, endpoint set, key, extra params)."""

    def __init__(self) -> None:
        self._entries: dict[str, _RouterEntry] = {}
        self._lock = threading.Lock()

    def _entry(
        self, litellm_model: str, api_bases: tuple[str, ...], api_key: str | None, extra: dict[str, Any]
    ) -> _RouterEntry:
        # The key is hashed so that the table never holds an API key as readable text twice.
        material = repr((litellm_model, api_bases, api_key, sorted(extra.items())))
        key = hashlib.sha256(material.encode()).hexdigest()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _RouterEntry(_build_router(litellm_model, api_bases, api_key, extra), api_bases)
                self._entries[key] = entry
        return entry

    async def acompletion(
        self,
        litellm_model: str,
        api_bases: tuple[str, ...],
        api_key: str | None,
        extra: dict[str, Any],
        call_kwargs: dict[str, Any],
    ) -> Any:
        """One attempt through the set's Router (which may itself fail over to other endpoints); when
        every endpoint is cooling down from failures other than refused connections, after waiting
        for the first to cool off."""
        entry = self._entry(litellm_model, api_bases, api_key, extra)
        for waited in (False, True):
            try:
                return await entry.router.acompletion(model=litellm_model, **call_kwargs)
            except Exception as exc:
                if not _all_cooling_down(exc):
                    entry.last_error, entry.failed_at, entry.down = (
                        _one_line(exc),
                        time.monotonic(),
                        refused_connection(exc),
                    )
                    raise
                if waited or entry.down:
                    break
                await asyncio.sleep(entry.cooling_left_s())
        cause = f"; last failure: {entry.last_error}" if entry.last_error else ""
        raise EndpointsCoolingDown(
            f"all {len(api_bases)} endpoints ({', '.join(api_bases)}) failed recently and are "
            f"cooling down for {COOLDOWN_S:g}s{cause}"
        )


@cache
def shared_routers() -> ReplicaRouters:
    """The process's Routers, which every gateway uses. Each Router adds its least-busy handler to
    litellm's process-wide callback lists, and nothing removes it: with a Router per gateway, every
    `agentscale.load` of a replicated graph without `gateway=` left one more, and every call of the
    process walked them (8.9 -> 12.1 ms of CPU per call at 100, where litellm stops taking callbacks)."""
    return ReplicaRouters()


def served_by(response: Any) -> str | None:
    """The api_base that answered a Router call (litellm records it in the response's hidden params)."""
    value = (getattr(response, "_hidden_params", None) or {}).get("api_base")
    return str(value) if value else None


def _build_router(litellm_model: str, api_bases: tuple[str, ...], api_key: str | None, extra: dict[str, Any]) -> Any:
    litellm = get_litellm()
    deployments = []
    for api_base in api_bases:
        params: dict[str, Any] = {"model": litellm_model, "api_base": api_base, **extra}
        if api_key:
            params["api_key"] = api_key
        deployments.append({"model_name": litellm_model, "litellm_params": params})
    return litellm.Router(
        model_list=deployments,
        routing_strategy=ROUTING_STRATEGY,
        num_retries=len(api_bases) - 1,  # within one attempt, each endpoint at most once
        retry_after=0,  # failing over to another endpoint needs no wait; the gateway backs off between attempts
        allowed_fails=0,
        cooldown_time=COOLDOWN_S,
    )


def _all_cooling_down(exc: BaseException) -> bool:
    from litellm.types.router import RouterRateLimitError

    return isinstance(exc, RouterRateLimitError)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."
