"""`agentscale run`: answer one question or a JSONL file of questions with a graph."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from agentscale.cli._console import (
    Interrupted,
    ReaderGone,
    err,
    keep_stdout_for_json,
    print_json,
    print_plain,
    say_simulated,
    short,
)
from agentscale.cli._options import DbOption, NoCacheOption, checked_graph_text, make_gateway, refuse_ignored
from agentscale.cli._progress import progress_bar
from agentscale.cli._tables import format_usage, round_lines, trace_table
from agentscale.cli.tracing import TraceOption, traced_run
from agentscale.errors import AgentScaleError
from agentscale.graphs.result import RunResult
from agentscale.graphs.spec import AnswerFormat

if TYPE_CHECKING:
    from agentscale.runtime.graph import Graph


def run_command(
    graph_file: Annotated[Path, typer.Argument(help="Graph YAML file.", show_default=False)],
    question: Annotated[str | None, typer.Option("-q", "--question", help="The question to answer.")] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help='JSONL file, one {"question": ..., "id": ...} per line.')
    ] = None,
    answer_format: Annotated[
        str | None, typer.Option("--answer-format", help="Answer extractor: text, number, choice or code.")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="Questions answered at once with --input (default 4).", min=1)
    ] = None,
    show_prompts: Annotated[
        bool,
        typer.Option(
            "--show-prompts", help="Print every node's prompt and completion (--json always has the prompts)."
        ),
    ] = False,
    trace: TraceOption = None,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON on stdout (human output is suppressed): one document, or with --input one line "
            "per question.",
            callback=keep_stdout_for_json,
        ),
    ] = False,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Answer a question with a graph and show the answer and a per-node trace.

    Examples:

      agentscale run graphs/fan-in.yaml -q "What is 17 + 25?"

      agentscale run graphs/fan-in.yaml --input questions.jsonl --json
    """
    from agentscale.graphs.simulated import spec_is_simulated
    from agentscale.runtime.batch import DEFAULT_BATCH_CONCURRENCY, read_questions
    from agentscale.runtime.graph import Graph

    if (question is None) == (input_file is None):
        raise AgentScaleError("give exactly one of -q/--question or --input")
    if question is not None and not question.strip():  # as --input refuses an empty line's question
        raise AgentScaleError("-q/--question is empty: give the question to answer")
    if answer_format is not None and answer_format not in ("text", "number", "choice", "code"):
        raise AgentScaleError(f"--answer-format {answer_format!r}: use text, number, choice or code")
    if question is not None:  # silently ignored before, as --show-prompts was with --input
        refuse_ignored({"--concurrency": concurrency is not None}, "answers one question", by="-q")
    else:
        refuse_ignored(
            {"--show-prompts": show_prompts}, "prints one line per question (--json has the prompts)", by="--input"
        )
    fmt: AnswerFormat | None = answer_format  # type: ignore[assignment]
    text = checked_graph_text(graph_file)
    graph = Graph.from_yaml(text, gateway=make_gateway(db, no_cache), answer_format=fmt, source=str(graph_file))
    simulated = spec_is_simulated(graph.spec)  # sim/ figures say so, wherever they are printed
    with traced_run(trace, "run", graph.name, {"graph": graph.name, "simulated": simulated}):
        if question is not None:
            _run_one(graph, question, json_output, show_prompts, simulated)
        else:
            assert input_file is not None
            at_once = concurrency or DEFAULT_BATCH_CONCURRENCY
            _run_many(graph, read_questions(input_file), at_once, json_output, simulated)


def _run_one(graph: Graph, question: str, json_output: bool, show_prompts: bool, simulated: bool) -> None:
    """The answer on stdout; a question left without one (every node failed, a budget stopped the
    run first) is a failure, exit 1, so `agentscale run ... && next` does not go on without it."""
    with err.status(f"running {graph.name} ({len(graph.spec.nodes)} nodes)…", spinner="dots"):
        result = graph.run(question)
    if json_output:
        print_json(result.to_dict())  # the contract's trace: prompts included; `simulated` too
    else:
        if show_prompts:
            _print_prompts(result)
        err.print(trace_table(result.trace, title=f"{graph.name} · run {result.run_id}"))
        for line in round_lines([record.to_dict() for record in result.rounds or []]):
            err.print(line, markup=False)
        err.print(format_usage(result.usage))
        if cut := [t for t in result.trace if t.status == "ok" and t.truncated]:
            nodes = ", ".join(f"{t.node_id} ({t.completion_tokens} tokens)" for t in cut)
            err.print(
                f"[yellow]cut at max_tokens:[/] {escape(nodes)}: the reply stopped at its max_tokens, the answer "
                "maybe cut short; raise the node's or the graph's max_tokens",
                markup=True,
            )
        # without an answer the error below says why: a node's failure was printed three times over
        said = result.why_no_answer or ""
        if result.stopped_reason and result.stopped_reason != said:
            err.print(f"[yellow]stopped early:[/] {escape(result.stopped_reason)}", markup=True)
        for problem in result.errors:
            if not said or (problem != said and problem.partition(": ")[2] not in said):
                err.print(f"[red]failed:[/] {escape(problem)}", markup=True)
        if simulated:
            say_simulated(err)
        if result.answer is not None:
            print_plain(result.answer)
    if result.answer is None:
        raise AgentScaleError(f"no answer (run {result.run_id}): {result.why_no_answer}")


def _print_prompts(result: RunResult) -> None:
    for node in result.trace:
        err.rule(f"{node.node_id} ({node.role})")
        for message in node.messages:
            err.print(f"[bold]{escape(message['role'])}:[/] {escape(message['content'])}", markup=True)
        if node.completion is not None:
            err.print(f"[bold]completion:[/] {escape(node.completion)}", markup=True)


def _run_many(graph: Graph, items: list[tuple[str, str]], concurrency: int, json_output: bool, simulated: bool) -> None:
    """Answer a file of questions as one run; after a Ctrl-C, say which run keeps the answers so far."""
    from agentscale.runtime.batch import run_batch

    progress = progress_bar(status=False, quiet=json_output, eta=True)
    run_ids: list[str] = []

    try:
        with progress:
            bar = progress.add_task(escape(graph.name), total=len(items))  # descriptions are markup
            batch = asyncio.run(
                run_batch(
                    graph,
                    items,
                    concurrency=concurrency,
                    on_answered=lambda: progress.advance(bar),
                    on_result=lambda key, result: _emit(result, key, json_output, simulated),
                    on_run=run_ids.append,
                )
            )
    except KeyboardInterrupt as stop:  # re-raised by asyncio.run once the batch is cancelled, marked interrupted
        if not run_ids:
            raise
        assert graph.store is not None  # a run id is only given with a store
        answered = len(graph.store.run_items(run_ids[0]))  # as stored (a second Ctrl-C may have cut the summary)
        if isinstance(stop, ReaderGone):  # stdout is closed: the rest is for stderr, if anyone reads it
            err.print(f"stdout was closed; run {run_ids[0]} keeps the {answered} of {len(items)} questions answered")
            raise Interrupted(141) from None
        err.print(f"interrupted; run {run_ids[0]} keeps the {answered} of {len(items)} questions answered")
        err.print(f"see them with: {graph.store.command_line('runs', 'show', run_ids[0])}")
        if graph.gateway.settings.cache:  # a new run, but the questions answered cost nothing again
            err.print("the same command again answers the rest, those answered from the response cache")
        if json_output:
            print_json({"run_id": run_ids[0], "status": "interrupted", "answered": answered, "n": len(items)})
        raise Interrupted from None
    unanswered = [result for result in batch.results if result.answer is None]
    if len(unanswered) == len(items):  # a failure, exit 1, as for one question: not "4 questions answered"
        raise AgentScaleError(f"no question got an answer (run {batch.run_id}): {unanswered[0].why_no_answer}")
    if not json_output:
        how_many = f"{len(items) - len(unanswered)} of {len(items)}" if unanswered else f"{len(items)}"
        err.print(f"run {batch.run_id}: {how_many} questions answered")
        if unanswered:
            err.print(
                f"[yellow]{len(unanswered)} got no answer[/], the first: {escape(unanswered[0].why_no_answer or '')}",
                markup=True,
            )
        if simulated:
            say_simulated(err)


def _emit(result: RunResult, key: str, json_output: bool, simulated: bool) -> None:
    if json_output:
        print_json({"id": key, **result.to_dict(), "simulated": simulated})
    else:
        print_plain(
            f"{key}\t{short(result.question, 50)}\t{result.answer if result.answer is not None else '(no answer)'}"
        )
