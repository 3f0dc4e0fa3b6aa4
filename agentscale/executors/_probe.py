"""The driver's cache probe: before an item is shipped, find the cache entries it would replay.

Workers have no database, so the response cache must come to them. Which entries an item will hit
cannot be listed up front (a node's prompt holds its predecessors' answers), so the driver runs the
item's graph once with a gateway that answers only from the cache: every hit is an entry to ship,
and every miss a call the worker will have to make. Misses fail at once, so the probe costs a few
milliseconds and never calls a model. An item whose probe met no miss is answered entirely from the
cache; the executor then runs it in the driver, exactly as the local executor would.

Limit: a node downstream of a miss sees fewer inputs in the probe than in the real run, so its
entry is not found; such an entry only exists if the same prompts were answered before in another
context (the normal resume case, an item cut off mid-graph, has nothing cached past the cut).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import Any

from agentscale.errors import ModelCallError
from agentscale.models.budget import CallTime
from agentscale.models.gateway import CallRequest, CallResult, Gateway
from agentscale.runtime.graph import Graph
from agentscale.storage.tables import CacheEntry


@dataclass
class _Found:
    entries: dict[str, CacheEntry] = field(default_factory=dict)
    misses: int = 0


_FOUND: contextvars.ContextVar[_Found] = contextvars.ContextVar("agentscale_probe")


class _CacheOnlyGateway(Gateway):
    """Answers from the cache and remembers the entries; a miss is a failed call, never a real one."""

    async def complete(
        self,
        request: CallRequest,
        *,
        node: str | None = None,
        clock: CallTime | None = None,
        run_id: str | None = None,
        item_key: str | None = None,
    ) -> CallResult:
        assert self.store is not None
        found = _FOUND.get()
        entry = self.store.cache_get(request.cache_key())
        if entry is None:
            found.misses += 1
            raise ModelCallError("not in the cache (probe)", node=node)
        found.entries[entry.key] = entry
        return CallResult.from_cache(entry)


class _ProbeGraph(Graph):
    """The probe never calls a model, so it must not start local model servers either."""

    async def _prepare_endpoints(self) -> None:
        return None


class CacheProbe:
    """One per driver graph: a cache-only twin of it."""

    def __init__(self, graph: Graph) -> None:
        assert graph.store is not None
        gateway = _CacheOnlyGateway(graph.store, graph.gateway.settings)
        self._graph = _ProbeGraph(graph.spec, gateway=gateway, answer_format=graph.runtime.answer_format)
        self._routes = sorted({model.route for model in graph.runtime.callers.values()})

    async def entries(self, question: str) -> list[dict[str, Any]] | None:
        """Cache entries to ship with the item, or None when the cache answers the whole item."""
        store = self._graph.store
        assert store is not None
        if not self._routes or not store.has_cached(self._routes):
            return []  # nothing cached for these models: no need to run the graph
        found = _Found()
        token = _FOUND.set(found)
        try:
            await self._graph.arun(question, record=False)
        finally:
            _FOUND.reset(token)
        if found.misses == 0:
            return None
        return [entry.model_dump() for entry in found.entries.values()]
