"""A batch of questions answered by one graph as one stored run (`agentscale run --input`).

A single question (`Graph.run`) writes its run row with its calls. A batch is one run of many
questions, so its row is created first and finished at the end: `done`, or (with how many questions
were answered) `interrupted` when the batch is cancelled (Ctrl-C) and `failed` with the error when it
fails, so `runs list` tells a batch that stopped mid-way from a finished one. Each question's calls
and item are recorded by `Graph.arun` under the batch's run id as the question finishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentscale.errors import AgentScaleError
from agentscale.graphs.result import RunResult
from agentscale.runtime.compile import checked_question
from agentscale.runtime.graph import Graph
from agentscale.tasks.sources.jsonl import jsonl_records, record_id, unique_id

DEFAULT_BATCH_CONCURRENCY = 4  # questions answered at once (`agentscale run --input`'s default)


@dataclass
class BatchResult:
    run_id: str | None  # None when the graph has no store
    results: list[RunResult]  # in input order


def _checked_items(items: Sequence[str | tuple[str, str]]) -> list[tuple[str, str]]:
    """(id, question) pairs from questions or pairs, refused before any call: a repeated id was
    refused by `arun` only when its question came, after the batch had paid for the others."""
    if isinstance(items, str):
        raise TypeError("run_batch takes a list of questions (or (id, question) pairs), not one string")
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        key, question = (str(index), item) if isinstance(item, str) else _pair(item, index)
        checked_question(question, f"item {key}")
        if key in seen:
            raise AgentScaleError(f"run_batch: the id {key!r} is given twice: give each question its own id")
        seen.add(key)
        pairs.append((key, question))
    return pairs


def _pair(item: object, index: int) -> tuple[str, str]:
    if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str | int)):
        raise TypeError(f"run_batch: item {index} is neither a question nor an (id, question) pair: {item!r:.80}")
    return str(item[0]), item[1]


def read_questions(path: Path) -> list[tuple[str, str]]:
    """(id, question) pairs from a JSONL file; each line an object with `question` (and optional `id`,
    else the line number). Errors name the file and line, so a user can fix a long file."""
    if not path.exists():
        raise AgentScaleError(f"{path}: file not found")
    items: list[tuple[str, str]] = []
    first_line: dict[str, int] = {}  # an answer is matched to its question by id: ids must not clash
    for number, record in jsonl_records(path):
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("question"), str)
            or not record["question"].strip()
        ):
            raise AgentScaleError(f"{path}:{number}: each line must be an object with a non-empty string 'question'")
        item_id = record_id(path, number, record, str(number))
        unique_id(path, number, item_id, first_line)
        items.append((item_id, record["question"]))
    if not items:
        raise AgentScaleError(f"{path}: no questions")
    return items


async def run_batch(
    graph: Graph,
    items: Sequence[str | tuple[str, str]],
    *,
    concurrency: int = DEFAULT_BATCH_CONCURRENCY,
    on_answered: Callable[[], None] | None = None,
    on_result: Callable[[str, RunResult], None] | None = None,
    on_run: Callable[[str], None] | None = None,
) -> BatchResult:
    """Answer `items` with `graph`, `concurrency` questions at a time, as one stored run (one run per
    question is what `arun` alone makes). An item is a question (its id is its index: "0", "1", ...)
    or an (id, question) pair; ids must differ, and every question is checked before the first call.

    `on_answered()` is called as each question finishes, in finishing order (a progress bar's tick).
    `on_result(id, result)` is called in input order, as soon as every earlier question has its answer,
    so a caller can stream results in the order it gave them without waiting for the whole batch.
    `on_run(run_id)` is called once the run's row exists (with a store), so a caller can name the run
    before any answer, and after an interruption.
    Any exception (a cancel, Ctrl-C, or one raised by a callback) cancels the questions still running,
    marks the run `interrupted` (a stop) or `failed` (an error) and is raised again.
    """
    items = _checked_items(items)
    store = graph.store
    run_id = None
    if store is not None:
        run_id = store.create_run("run", graph_name=graph.name, graph_yaml=graph.to_yaml(), config={"n": len(items)}).id
        if on_run is not None:
            on_run(run_id)
    semaphore = asyncio.Semaphore(concurrency)
    results: dict[int, RunResult] = {}
    delivered = 0

    async def answer(index: int, key: str, text: str) -> None:
        async with semaphore:
            results[index] = await graph.arun(text, run_id=run_id, item_key=key)

    tasks = [asyncio.ensure_future(answer(i, key, text)) for i, (key, text) in enumerate(items)]
    try:
        for finished in asyncio.as_completed(tasks):
            await finished
            if on_answered is not None:
                on_answered()
            while delivered in results:  # in input order, as soon as possible
                if on_result is not None:
                    on_result(items[delivered][0], results[delivered])
                delivered += 1
    except BaseException as exc:
        for task in tasks:
            task.cancel()
        try:
            await asyncio.gather(*tasks, return_exceptions=True)  # none still running, or recording, after this
        finally:  # also when a second Ctrl-C cuts the wait short
            if store is not None and run_id is not None:  # what is stored: a question may finish as it is cancelled
                store.finish_broken_run(run_id, exc, {"answered": len(store.run_items(run_id))})
        raise
    if store is not None and run_id is not None:
        store.finish_run(run_id, "done", {"n": len(items)})
    return BatchResult(run_id, [results[i] for i in range(len(items))])
