"""A batch of questions as one run (runtime/batch.py), against the scripted server over real HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from agentscale import Graph, Store
from agentscale.errors import AgentScaleError
from agentscale.runtime.batch import read_questions, run_batch
from agentscale.storage.db import Row
from agentscale.storage.tables import RunItem
from agentscale.testing import Rule, ScriptedServer
from tests.conftest import graph_yaml

ONE = "name: one\nnodes:\n  - {id: a, role: assistant, model: m}\nanswer_format: number\n"


async def test_results_come_in_input_order_as_soon_as_the_earlier_ones_are_in(
    make_graph, scripted: ScriptedServer, store: Store
) -> None:
    scripted.add_rule(Rule(pattern="slow", replies=["Final answer: 7"], latency_s=1.5))
    graph: Graph = make_graph(ONE)
    items = [("first", "slow: what is 3 + 4?"), ("second", "What is 1 + 1?"), ("third", "What is 2 + 2?")]
    events: list[str] = []
    batch = await run_batch(
        graph,
        items,
        concurrency=3,
        on_answered=lambda: events.append("answered"),
        on_result=lambda key, result: events.append(f"{key}={result.answer}"),
    )
    # the slow first question holds the others back, then all three come at once, in input order
    assert events == ["answered", "answered", "answered", "first=7", "second=2", "third=4"]
    assert [r.answer for r in batch.results] == ["7", "2", "4"]
    assert batch.run_id is not None and {r.run_id for r in batch.results} == {batch.run_id}
    run = store.get_run(batch.run_id)
    assert (run.kind, run.status, json.loads(run.summary_json)) == ("run", "done", {"n": 3})
    assert json.loads(run.config_json) == {"n": 3} and run.graph_name == "one"
    assert sorted(i.item_key for i in store.run_items(batch.run_id)) == ["first", "second", "third"]


async def test_the_public_batch_takes_plain_questions_and_refuses_bad_items_before_any_call(
    make_graph, scripted: ScriptedServer, store: Store
) -> None:
    """`agentscale.run_batch` groups an app's questions in one run (N `arun` calls made N runs, and
    nothing public made a run to pass as run_id=): plain questions get their index as id; a repeated
    id or an item that is no question is refused before the first call, not when its turn came."""
    import agentscale

    graph: Graph = make_graph(ONE)
    batch = await agentscale.run_batch(graph, ["What is 1 + 1?", "What is 2 + 2?"])
    assert isinstance(batch, agentscale.BatchResult) and [r.answer for r in batch.results] == ["2", "4"]
    assert batch.run_id is not None and sorted(i.item_key for i in store.run_items(batch.run_id)) == ["0", "1"]
    asked = len(scripted.completion_requests)
    refused = [
        ([("a", "What is 1 + 1?"), ("a", "What is 2 + 2?")], AgentScaleError, "the id 'a' is given twice"),
        (["What is 1 + 1?", ("1", 5)], AgentScaleError, "item 1: a string, got int"),
        (["What is 1 + 1?", ("1", "q", "x")], TypeError, "item 1 is neither a question nor an"),
        ("What is 1 + 1?", TypeError, "not one string"),
    ]
    for items, error, said in refused:
        with pytest.raises(error, match=said):
            await agentscale.run_batch(graph, items)  # type: ignore[arg-type]
    assert len(scripted.completion_requests) == asked


async def test_concurrency_bounds_the_questions_in_flight(make_graph, scripted: ScriptedServer) -> None:
    scripted.latency_s = 0.2
    graph: Graph = make_graph(ONE)
    await run_batch(graph, [(str(i), f"What is {i} + 1?") for i in range(6)], concurrency=2)
    assert scripted.peak_concurrency == 2


async def test_a_batch_whose_consumer_fails_is_marked_failed_with_what_it_answered(
    make_graph, scripted: ScriptedServer, store: Store
) -> None:
    scripted.add_rule(Rule(pattern="slow", replies=["Final answer: 1"], latency_s=1.0))
    graph: Graph = make_graph(ONE)
    items = [("a", "What is 1 + 1?"), ("b", "slow: what is 0 + 1?")]
    seen: list[str] = []

    def stop(key: str, _result: object) -> None:
        seen.append(key)
        raise RuntimeError("the consumer went away")

    with pytest.raises(RuntimeError, match="went away"):
        await run_batch(graph, items, concurrency=2, on_result=stop)
    assert seen == ["a"]
    (run,) = store.list_runs()
    assert (run.status, run.error, json.loads(run.summary_json)) == (
        "failed",
        "the consumer went away",
        {"answered": 1},
    )
    assert len(store.run_items(run.id)) == 1  # the cancelled question recorded nothing
    await asyncio.sleep(1.5)  # the server answers the cancelled call (to a closed socket) inside this test


def test_read_questions_takes_ids_or_line_numbers_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "What is 1 + 1?", "id": "x"}\n\n{"question": "What is 2 + 2?"}\n')
    assert read_questions(path) == [("x", "What is 1 + 1?"), ("3", "What is 2 + 2?")]
    path.write_text('{"question": "ok"}\n{"question": ""}\n')
    with pytest.raises(AgentScaleError, match=r"q.jsonl:2: each line must be an object with a non-empty string"):
        read_questions(path)
    path.write_text("\n")
    with pytest.raises(AgentScaleError, match="no questions"):
        read_questions(path)
    with pytest.raises(AgentScaleError, match="file not found"):
        read_questions(tmp_path / "missing.jsonl")
    path.write_bytes(b'{"question": "ok"}\n\xff\xfe bad\n')  # these two were tracebacks
    with pytest.raises(AgentScaleError, match=r"q.jsonl:2: not UTF-8 text"):
        read_questions(path)
    with pytest.raises(AgentScaleError, match="cannot read: Is a directory"):
        read_questions(tmp_path)
    path.write_text('{"question": "ok"}\n{"question": "ok"\n')
    with pytest.raises(AgentScaleError, match=r"q.jsonl:2: invalid JSON"):
        read_questions(path)
    # a fuzzer's: answers are matched to questions by id, and these were taken as given
    for lines, message in [
        (
            '{"id": "x", "question": "a"}\n{"id": "x", "question": "b"}\n',
            r"q.jsonl:2: duplicate id 'x' \(first on line 1\)",
        ),
        ('{"id": 1, "question": "a"}\n{"id": "1", "question": "b"}\n', r"q.jsonl:2: duplicate id '1'"),
        ('{"id": null, "question": "a"}\n', r"q.jsonl:1: field 'id' must be a non-empty string or an integer"),
        ('{"id": {"k": 1}, "question": "a"}\n', r"q.jsonl:1: field 'id' must be a non-empty string or an integer"),
        ('{"id": "x\\u001b[2J", "question": "a"}\n', r"q.jsonl:1: field 'id' holds a control character"),
    ]:
        path.write_text(lines)
        with pytest.raises(AgentScaleError, match=message):
            read_questions(path)


class _CancelsOnItem(Store):
    """Cancels the batch as soon as a question's item row is written: the cancel lands between a
    question's rows and its result reaching the batch."""

    batch: asyncio.Future[object] | None = None

    def insert(self, rows: Sequence[Row], **options: bool) -> None:
        super().insert(rows, **options)
        if self.batch is not None and any(table is RunItem for table, _ in rows):
            self.batch.cancel()


async def test_an_interrupted_batch_counts_what_it_stored(tmp_path: Path, scripted: ScriptedServer) -> None:
    """It counted the results it had received: a question recorded as the cancel landed was stored and
    not counted (`run --input` said 48 answered where the run kept 49)."""
    store = _CancelsOnItem(tmp_path / "b.db")
    graph = Graph.from_yaml(graph_yaml(scripted.api_base, ONE), store=store)
    store.batch = asyncio.ensure_future(run_batch(graph, [("a", "What is 1 + 1?")], concurrency=1))
    with pytest.raises(asyncio.CancelledError):
        await store.batch
    (run,) = store.list_runs()
    assert (run.status, json.loads(run.summary_json)) == ("interrupted", {"answered": len(store.run_items(run.id))})
    assert len(store.run_items(run.id)) == 1
