"""`agentscale run`: answer one question or a JSONL file of questions with a graph."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from agentscale.cli._console import err, out, print_json, short
from agentscale.cli._options import DbOption, JsonOption, NoCacheOption, make_gateway
from agentscale.cli._progress import progress_bar
from agentscale.cli._tables import format_usage, trace_table
from agentscale.cli.tracing import TraceOption, traced_run
from agentscale.errors import AgentScaleError
from agentscale.graphs.result import RunResult
from agentscale.graphs.spec import AnswerFormat
from agentscale.runtime.graph import Graph, load


def read_questions(path: Path) -> list[tuple[str, str]]:
    """(id, question) pairs from a JSONL file; each line an object with `question` (and optional `id`)."""
    if not path.exists():
        raise AgentScaleError(f"{path}: file not found")
    items: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AgentScaleError(f"{path}:{number}: invalid JSON ({exc.msg})") from None
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("question"), str)
            or not record["question"].strip()
        ):
            raise AgentScaleError(f"{path}:{number}: each line must be an object with a non-empty string 'question'")
        items.append((str(record.get("id", number)), record["question"]))
    if not items:
        raise AgentScaleError(f"{path}: no questions")
    return items


def run_command(
    graph_file: Annotated[Path, typer.Argument(help="Graph YAML file.", show_default=False)],
    question: Annotated[str | None, typer.Option("-q", "--question", help="The question to answer.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help='JSONL file, one {"question": ..., "id": ...} per line.')
    ] = None,
    answer_format: Annotated[
        str | None, typer.Option("--answer-format", help="Answer extractor: text, number, choice or code.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="Questions answered at once with --input.", min=1)] = 4,
    show_prompts: Annotated[
        bool, typer.Option("--show-prompts", help="Print every node's prompt and completion.")
    ] = False,
    trace: TraceOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Answer a question with a graph and show the answer and a per-node trace.

    Examples:

      agentscale run graphs/fan-in.yaml -q "What is 17 + 25?"

      agentscale run graphs/fan-in.yaml --input questions.jsonl --json
    """
    if (question is None) == (input_file is None):
        raise AgentScaleError("give exactly one of -q/--question or --input")
    if answer_format is not None and answer_format not in ("text", "number", "choice", "code"):
        raise AgentScaleError(f"--answer-format {answer_format!r}: use text, number, choice or code")
    fmt: AnswerFormat | None = answer_format  # type: ignore[assignment]
    graph = load(graph_file, gateway=make_gateway(db, no_cache), answer_format=fmt)
    with traced_run(trace, "run", graph.name, {"graph": graph.name}):
        if question is not None:
            _run_one(graph, question, json_output, show_prompts)
        else:
            assert input_file is not None
            asyncio.run(_run_many(graph, read_questions(input_file), concurrency, json_output))


def _run_one(graph: Graph, question: str, json_output: bool, show_prompts: bool) -> None:
    with err.status(f"running {graph.name} ({len(graph.spec.nodes)} nodes)…", spinner="dots"):
        result = graph.run(question)
    if json_output:
        print_json(result.to_dict(include_messages=show_prompts))
        return
    if show_prompts:
        _print_prompts(result)
    err.print(trace_table(result.trace, title=f"{graph.name} · run {result.run_id}"))
    err.print(format_usage(result.usage))
    if result.stopped_reason:
        err.print(f"[yellow]stopped early:[/] {result.stopped_reason}")
    for problem in result.errors:
        err.print(f"[red]failed:[/] {problem}")
    out.print(result.answer if result.answer is not None else "(no answer)")


def _print_prompts(result: RunResult) -> None:
    for node in result.trace:
        err.rule(f"{node.node_id} ({node.role})")
        for message in node.messages:
            err.print(f"[bold]{message['role']}:[/] {message['content']}", markup=True, highlight=False)
        if node.completion is not None:
            err.print(f"[bold]completion:[/] {node.completion}", highlight=False)


async def _run_many(graph: Graph, items: list[tuple[str, str]], concurrency: int, json_output: bool) -> None:
    store = graph.store
    run_id = None
    if store is not None:
        run_id = store.create_run("run", graph_name=graph.name, graph_yaml=graph.to_yaml(), config={"n": len(items)}).id
    semaphore = asyncio.Semaphore(concurrency)
    results: dict[int, RunResult] = {}
    printed = 0

    async def answer(index: int, key: str, text: str) -> None:
        async with semaphore:
            results[index] = await graph.arun(text, run_id=run_id, item_key=key)

    progress = progress_bar(status=False)
    tasks = [asyncio.ensure_future(answer(i, key, text)) for i, (key, text) in enumerate(items)]
    try:
        with progress:
            bar = progress.add_task(f"{graph.name}", total=len(items))
            for finished in asyncio.as_completed(tasks):
                await finished
                progress.advance(bar)
                while printed in results:  # print in input order, as soon as possible
                    _emit(results[printed], items[printed][0], json_output)
                    printed += 1
    except BaseException:
        for task in tasks:
            task.cancel()
        if store is not None and run_id is not None:
            store.finish_run(run_id, "interrupted", {"answered": len(results)})
        raise
    if store is not None and run_id is not None:
        store.finish_run(run_id, "done", {"n": len(items)})
    if not json_output:
        err.print(f"run {run_id}: {len(items)} questions answered")


def _emit(result: RunResult, key: str, json_output: bool) -> None:
    if json_output:
        print_json({"id": key, **result.to_dict(include_messages=False)})
    else:
        out.print(
            f"{key}\t{short(result.question, 50)}\t{result.answer if result.answer is not None else '(no answer)'}"
        )
