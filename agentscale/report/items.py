"""A run's answered items and their node-by-node traces, read for the report's item table.

Read with SQLAlchemy Core (columns, not ORM objects): a 10,000-item eval has tens of thousands of
node calls, and building ORM objects for them would cost seconds. Texts that repeat across items
(system prompts, role instructions) are stored once in a string table the page indexes into, which
keeps a large report several times smaller and quicker to open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from agentscale.evaluate.item_records import ended_early
from agentscale.evaluate.stats import percentile, wilson_interval
from agentscale.graphs.result import Usage
from agentscale.storage.db import Store
from agentscale.storage.tables import NodeCall, RunItem

ITEMS = RunItem.__table__  # type: ignore[attr-defined]
CALLS = NodeCall.__table__  # type: ignore[attr-defined]


class StringTable:
    """Each distinct text once; rows refer to texts by index."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def ref(self, text: str | None) -> int | None:
        if text is None:
            return None
        index = self._index.get(text)
        if index is None:
            index = self._index[text] = len(self.texts)
            self.texts.append(text)
        return index


@dataclass
class ItemSet:
    """What the page's item table needs: rows, traces (by row index) and the totals over them."""

    rows: list[list[Any]] = field(default_factory=list)
    traces: list[list[list[Any]]] = field(default_factory=list)
    strings: StringTable = field(default_factory=StringTable)
    usage: Usage = field(default_factory=Usage)
    latencies: list[float] = field(default_factory=list)  # wall clock per item
    critical_paths: list[float] = field(default_factory=list)  # the calls' latencies along the longest chain
    routes: set[str] = field(default_factory=set)

    @property
    def scored(self) -> int:
        return sum(1 for row in self.rows if row[4] is not None)

    @property
    def correct(self) -> int:
        return sum(1 for row in self.rows if row[4])

    @property
    def unfinished(self) -> list[list[Any]]:
        """Rows whose graph did not finish normally (a failed call, a budget cut), scored as they ended;
        a cap passed by calls already made is no cut (`EvalSummary.unfinished`)."""
        return [row for row in self.rows if ended_early(row[5])]

    def accuracy(self) -> dict[str, Any] | None:
        return accuracy_of(self.correct, self.scored)

    def latency(self) -> dict[str, float]:
        return _spread(self.latencies)

    def critical_path(self) -> dict[str, float]:
        """What an item takes when its calls run as the graph allows (simulated models answer at once
        in wall-clock time: this is their modelled latency)."""
        return _spread(self.critical_paths)

    def page_data(self) -> dict[str, Any]:
        """Rows as arrays (keys listed once): `[key, question, reference, answer, correct, stopped,
        tokens, latency_s, detail]`."""
        return {"rows": self.rows, "count": len(self.rows)}

    def trace_data(self) -> dict[str, Any]:
        """Per row, its calls: `[node, role, route, status, [[msg role, text ref]...], completion ref,
        answer, prompt tokens, completion tokens, latency_s, cached, error, truncated]`."""
        return {"strings": self.strings.texts, "calls": self.traces}


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "mean_s": sum(values) / len(values) if values else 0.0,
        "p50_s": percentile(values, 50),
        "p95_s": percentile(values, 95),
        "max_s": max(values, default=0.0),
    }


def accuracy_of(correct: int, scored: int) -> dict[str, Any] | None:
    """Accuracy over scored items with its 95% Wilson interval; None when nothing was scored."""
    if not scored:
        return None
    low, high = wilson_interval(correct, scored)
    return {"correct": correct, "n": scored, "value": correct / scored, "ci95": [low, high]}


def read_items(store: Store, run_id: str, key_prefix: str = "") -> ItemSet:
    """Items of a run (those whose key starts with `key_prefix`, shown without it), in answer order."""
    items = ItemSet()
    position: dict[str, int] = {}
    columns = ("item_key", "question", "reference", "answer", "correct", "stopped_reason", "usage_json", "detail")
    paid = store.paid_calls_by_item(run_id)
    with store.engine.connect() as connection:
        query = _of_run(ITEMS, columns, run_id, key_prefix)
        for key, question, reference, answer, correct, stopped, usage_json, detail in connection.execute(query):
            usage = Usage(**json.loads(usage_json))
            usage.count_own_hits_as_calls(paid.get(key, 0))  # as the eval's summary counts them
            items.usage.add(usage)
            items.latencies.append(usage.latency_s)
            items.critical_paths.append(usage.critical_path_s)
            position[key] = len(items.rows)
            verdict = None if correct is None else int(bool(correct))
            items.rows.append(
                [
                    key[len(key_prefix) :],
                    question,
                    reference,
                    answer,
                    verdict,
                    stopped,
                    usage.tokens,
                    round(usage.latency_s, 4),
                    detail,
                ]
            )
            items.traces.append([])
        _read_calls(connection, run_id, key_prefix, position, items)
    return items


def _of_run(table: Any, columns: tuple[str, ...], run_id: str, key_prefix: str) -> Any:
    """These columns of a run's rows (those whose item key starts with `key_prefix`), in insert order."""
    query = select(*(table.c[name] for name in columns)).where(table.c.run_id == run_id)
    if key_prefix:
        query = query.where(table.c.item_key.startswith(key_prefix, autoescape=True))
    return query.order_by(table.c.id)


def _read_calls(connection: Any, run_id: str, key_prefix: str, position: dict[str, int], items: ItemSet) -> None:
    columns = (
        *("item_key", "node_id", "role", "route", "status", "messages_json", "completion", "answer"),
        *("prompt_tokens", "completion_tokens", "latency_s", "cached", "error", "truncated"),
    )
    query = _of_run(CALLS, columns, run_id, key_prefix)
    ref = items.strings.ref
    for (
        key,
        node,
        role,
        route,
        status,
        messages_json,
        completion,
        answer,
        pt,
        ct,
        latency,
        cached,
        error,
        truncated,
    ) in connection.execute(query):
        row = position.get(key)
        if row is None:  # calls of an item cut off before it was recorded
            continue
        if route:
            items.routes.add(route)
        messages = [[m.get("role", ""), ref(str(m.get("content", "")))] for m in json.loads(messages_json)]
        items.traces[row].append(
            [
                node,
                role,
                route,
                status,
                messages,
                ref(completion),
                answer,
                pt,
                ct,
                round(latency, 4),
                int(cached),
                error,
                int(bool(truncated)),  # the reply ended at its max_tokens: "ok, cut", as `runs show` says
            ]
        )
