"""The Ray side of the `ray` executor: a worker actor that answers items and writes nothing.

A worker runs the very same `Graph.arun` as the local executor, with a gateway whose store keeps rows
in memory instead of SQLite. What an item would have written goes back to the driver:
- its node calls and item row, in the returned :class:`ItemOutcome` (only the attempt that finishes
  returns, so a retried item is recorded once);
- each paid call's spend row and cache entry, to the outbox actor as soon as the call returns (so
  the calls of an attempt whose worker is killed later are still in the ledger, and a retry can
  replay them from the cache instead of paying again);
- when the driver traces, the item's spans (item, nodes, model calls) recorded as plain data with
  their times (:mod:`agentscale.tracing.recording`), in the :class:`ItemOutcome`; the driver replays
  them into its observer. The worker needs no tracing setup of its own.

The driver wraps :class:`ItemWorker` with `ray.remote`; Ray is imported only inside the worker, so
this module loads without it.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentscale.graphs.result import RunResult
from agentscale.graphs.spec import AnswerFormat
from agentscale.graphs.validate import load_spec_text
from agentscale.models.gateway import Gateway, GatewaySettings
from agentscale.models.litellm_loader import get_litellm
from agentscale.runtime.graph import Graph
from agentscale.storage.db import Row, Store
from agentscale.storage.tables import CacheEntry
from agentscale.tracing.recording import RecordedSpan, RecordRequest, recording

WORKER_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
"""Set in every worker process: litellm must not fetch its price map from the network at import."""


@dataclass(frozen=True)
class ItemTask:
    """One item as shipped to a worker: the graph as YAML (workers rebuild and keep it)."""

    graph_yaml: str
    answer_format: AnswerFormat
    settings: GatewaySettings
    question: str
    run_id: str | None
    item_key: str
    record: bool
    cache: tuple[dict[str, Any], ...] = ()  # cache entries this item may replay (found by the driver's probe)
    trace: RecordRequest | None = None  # the driver traces: record the item's spans (None: it does not)


@dataclass
class ItemOutcome:
    """What a finished attempt returns: the result and the rows the driver writes for it."""

    result: RunResult
    rows: list[tuple[str, dict[str, Any]]]
    pid: int
    spans: list[RecordedSpan] = field(default_factory=list)  # only when the task asked for them


@dataclass
class _ItemRows:
    """Rows and cache of the item being answered (one per item, found through a context variable)."""

    cache: dict[str, CacheEntry]
    rows: list[Row] = field(default_factory=list)
    sent: list[Any] = field(default_factory=list)  # outbox puts still travelling


_ITEM: contextvars.ContextVar[_ItemRows] = contextvars.ContextVar("agentscale_worker_item")


class WorkerStore(Store):
    """A `Store` that writes no file: rows are kept for the driver, paid calls go to the outbox.

    Only what a graph run uses is implemented (cache lookups, call records, row inserts); anything
    else would need the real database and fails loudly (there is no engine).
    """

    def __init__(self, outbox: Any) -> None:  # no super().__init__: nothing is opened here
        self.path = Path(f"<ray worker {os.getpid()}>")
        self._outbox = outbox

    def cache_get(self, key: str) -> CacheEntry | None:
        return _ITEM.get().cache.get(key)

    def has_cached(self, routes: Sequence[str]) -> bool:
        """Whether the item's shipped cache entries include these routes (a graph then starts their
        servers at the first miss, as it would in the driver)."""
        return any(entry.route in routes for entry in _ITEM.get().cache.values())

    def record_calls(self, calls: Any) -> None:
        item = _ITEM.get()
        for cache_entry, spend in calls:
            cache = cache_entry if isinstance(cache_entry, dict) or cache_entry is None else cache_entry.model_dump()
            if cache is not None:
                item.cache.setdefault(cache["key"], CacheEntry(**cache))
            spent = spend if isinstance(spend, dict) else spend.model_dump(exclude_none=True)
            item.sent.append(self._outbox.put.remote(cache, spent))

    def has_run(self, run_id: str) -> bool:
        """The driver made the run before it sent the item."""
        return True

    def has_item(self, run_id: str, item_key: str) -> bool:
        """The driver sends each of its run's items once, under a key of its own."""
        return False

    def insert(self, rows: Sequence[Row], *, keep_existing: bool = False) -> None:
        """Kept for the driver, which inserts them; `keep_existing` (only an interrupted single-question
        run's row asks for it) never applies here: a worker answers items of a run the driver made."""
        _ITEM.get().rows.extend(rows)


class ItemWorker:
    """A Ray actor (async: many items at once, like the local executor's event loop)."""

    def __init__(self, outbox_name: str) -> None:
        import ray

        os.environ.update(WORKER_ENV)
        get_litellm()  # seconds of import, paid when the worker starts rather than by its first item
        self._store = WorkerStore(ray.get_actor(outbox_name))
        self._graphs: dict[tuple[str, str, GatewaySettings], Graph] = {}

    def pid(self) -> int:
        return os.getpid()

    def node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def run_item(self, task: ItemTask) -> ItemOutcome:
        graph = self._graph(task)
        item = _ItemRows({entry["key"]: CacheEntry(**entry) for entry in task.cache})
        token = _ITEM.set(item)  # node tasks created inside arun inherit it
        try:
            if task.trace is None:
                result = await self._answer(graph, task)
                spans = []
            else:
                with recording(task.trace) as work:
                    result = await self._answer(graph, task)
                spans = work.spans()
        finally:
            _ITEM.reset(token)
        # every paid call is in the outbox before the driver sees this result (and drains the outbox)
        await asyncio.gather(*item.sent)
        rows = [(model.__name__, values) for model, values in item.rows]
        return ItemOutcome(result, rows, os.getpid(), spans)

    @staticmethod
    async def _answer(graph: Graph, task: ItemTask) -> RunResult:
        return await graph.arun(task.question, run_id=task.run_id, item_key=task.item_key, record=task.record)

    def _graph(self, task: ItemTask) -> Graph:
        key = (task.graph_yaml, task.answer_format, task.settings)
        if key not in self._graphs:
            spec = load_spec_text(task.graph_yaml, "graph from the driver", stored=True)
            gateway = Gateway(self._store, task.settings)
            # the driver validated it (a resumed run's under the rules of its time)
            self._graphs[key] = Graph(spec, gateway=gateway, answer_format=task.answer_format, stored=True)
        return self._graphs[key]
