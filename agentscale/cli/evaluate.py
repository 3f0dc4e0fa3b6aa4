"""`agentscale eval` and `agentscale tasks list`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from agentscale.cli._console import err, out, print_json, say_simulated, short, warn_if
from agentscale.cli._finish import FinishedRun, resumable
from agentscale.cli._options import (
    DbOption,
    ExecutorOption,
    JsonOption,
    NoCacheOption,
    RayAddressOption,
    RayWorkersOption,
    RetryErrorsOption,
    check_retry_errors,
    checked_graph_text,
    executor_config,
    make_gateway,
    parse_options,
    refuse_ignored,
    say_where_items_run,
)
from agentscale.cli._progress import progress_bar
from agentscale.cli._tables import usd_shown
from agentscale.cli.tracing import TraceOption, check_tracing, traced_run
from agentscale.errors import AgentScaleError
from agentscale.graphs.simulated import sim_models_on_another_task, spec_is_simulated, spec_routes
from agentscale.graphs.spec import handbook_label

if TYPE_CHECKING:
    from agentscale.evaluate.engine import EvalSummary, Evaluation, ItemResult
    from agentscale.storage.db import Store

tasks_app = typer.Typer(help="Built-in tasks.", no_args_is_help=True)


@tasks_app.command("list")
def tasks_list_command(json_output: JsonOption = False) -> None:
    """List built-in tasks with their sizes, scorers and answer formats.

    Example:

      agentscale tasks list
    """
    from agentscale.tasks import list_tasks

    infos = list_tasks()
    if json_output:
        print_json([info.__dict__ for info in infos])
        return
    table = Table("task", "items", "scorer", "answer", "description")
    for info in infos:
        table.add_row(info.name, str(info.size), info.scorer, info.answer_format, info.description)
    out.print(table)
    out.print(
        "Also: any JSONL file (question, answer, optional choices, id) with --scorer exact|numeric|choice|math|code."
    )


def eval_command(
    graph_file: Annotated[
        Path | None, typer.Argument(help="Graph YAML file (omit with --resume).", show_default=False)
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="Task: humaneval, rg:<name>, champ, sim:<name> (simulated), or a JSONL file (with --resume or "
            "--split-of: where the run's task file is now, if it was moved).",
        ),
    ] = None,
    split_of: Annotated[
        str | None,
        typer.Option(
            "--split-of",
            metavar="RUN",
            help="Evaluate on the test split of optimization RUN: the items it scored its crowned graph and the "
            "single calls on, with its task, options and scorer (instead of --task, --n, --seed).",
        ),
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Items to evaluate (default: all).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the item sample.", min=0)] = 0,
    scorer: Annotated[
        str | None,
        typer.Option(
            help="Scorer: exact, numeric, choice, math or code. A JSONL task's; a built-in task keeps its own "
            "unless one that reads the same answer format is named."
        ),
    ] = None,
    task_option: Annotated[
        list[str] | None,
        typer.Option("--task-option", help="Task generator option KEY=VALUE (repeatable), e.g. min_terms=2."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Items evaluated at once (per worker with --executor ray). Default 8; --resume keeps the run's "
            "unless given.",
            min=1,
            show_default=False,
        ),
    ] = None,
    handbook: Annotated[
        str | None,
        typer.Option("--handbook", help="Show each question's top behaviors from this handbook to every node."),
    ] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue an interrupted eval run.")] = None,
    retry_errors: RetryErrorsOption = False,
    show_items: Annotated[bool, typer.Option("--show-items", help="Print a per-item table.")] = False,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
    trace: TraceOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Measure a graph on a task: accuracy with a 95% Wilson interval, tokens, FLOPs, USD, latency.

    Examples:

      agentscale eval graphs/self-consistency.yaml --task humaneval \\
          --n 40 --seed 0

      agentscale eval graphs/fan-in.yaml --task my_data.jsonl --scorer numeric

      agentscale eval graphs/single.yaml --task rg:chain_sum \\
          --task-option min_terms=2 --task-option max_digits=1

      agentscale eval graphs/fan-in.yaml --task rg:gsm_symbolic --n 100 \\
          --handbook math

      agentscale eval graphs/fan-in.yaml --task humaneval \\
          --executor ray --ray-workers 4

      OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 \\
          agentscale eval g.yaml --task humaneval --trace otlp

      agentscale eval my-baseline.yaml --split-of 9d1e4b7a2c3f

      agentscale eval --resume 3f2a9c0d1e2b

      agentscale eval --resume 3f2a9c0d1e2b --retry-errors
    """
    from agentscale.evaluate.engine import DEFAULT_EVAL_CONCURRENCY, EvalConfig, Evaluation
    from agentscale.models.gateway import store_of
    from agentscale.optimize.split_of import split_of_optimization
    from agentscale.report import write_report
    from agentscale.runtime.graph import Graph

    check_tracing(trace)
    check_retry_errors(retry_errors, resume)
    text = checked_graph_text(graph_file) if graph_file is not None and resume is None else None
    gateway = make_gateway(db, no_cache, existing=resume is not None, run_files=True, resume=resume)
    split_run = None  # the optimization whose test split is answered
    where = executor_config(gateway, resume, executor, ray_address, ray_workers)
    if resume is not None:
        if graph_file is not None:
            raise AgentScaleError("--resume takes the graph from the stored run; do not give a graph file")
        if handbook is not None:
            raise AgentScaleError("--resume takes the handbook from the stored run; drop --handbook")
        refuse_ignored(
            {
                "--n": bool(n),
                "--scorer": bool(scorer),
                "--task-option": bool(task_option),
                "--seed": seed != 0,
                "--split-of": split_of is not None,
            },
            "answers the stored run's items, with its own sample and scorer",
        )
        evaluation = Evaluation.resume(
            resume, gateway, executor=where, concurrency=concurrency, task_file=task, retry_errors=retry_errors
        )
    else:
        if graph_file is None or (task is None and split_of is None):
            raise AgentScaleError("give a graph file and --task (or --split-of RUN_ID, or --resume RUN_ID)")
        common: dict[str, Any] = {
            "concurrency": concurrency or DEFAULT_EVAL_CONCURRENCY,
            "handbook": handbook,
            "executor": where.to_dict() if where is not None else {},
        }
        if split_of is None:
            assert task is not None  # checked above
            options = parse_options(task_option or [])
            config = EvalConfig(task=task, n=n, seed=seed, scorer=scorer, options=options, **common)
        else:
            refuse_ignored(
                {"--n": bool(n), "--seed": seed != 0, "--scorer": bool(scorer), "--task-option": bool(task_option)},
                "answers the optimization's test split, with its task, options and scorer",
                by="--split-of",
            )
            chosen = split_of_optimization(store_of(gateway, "--split-of"), split_of, task)
            split_run = chosen.run_id
            config = EvalConfig(
                task=chosen.task, scorer=chosen.scorer, options=chosen.options, split=chosen.split, **common
            )
        assert text is not None  # read above: a graph file without --resume
        evaluation = Evaluation(Graph.from_yaml(text, gateway=gateway, source=str(graph_file)), config)
    pending = {item.id for item in evaluation.pending()}
    todo = len(pending)
    total = len(evaluation.task.items)
    if not json_output:
        err.print(
            f"eval run [bold]{evaluation.run_id}[/] · {escape(evaluation.task.name)} · {total} items"
            + (f" ({total - todo} already done)" if todo < total else "")
            + (f" · the test split of optimization {split_run}" if split_run is not None else "")
            + f" · scorer {escape(evaluation.task.scorer_name)}",  # a JSONL task's was chosen without a word
            markup=True,
        )
    say_where_items_run(evaluation.executor.config(), json_output=json_output)
    warn_if(sim_models_on_another_task(spec_routes(evaluation.graph.spec), evaluation.task.name))
    asked_size = (evaluation.config.options or {}).get("size")
    warn_if(_more_than_the_task_has(evaluation.config.n, total, evaluation.task.name, asked_size))
    warn_if(_items_the_handbook_learned_from(evaluation))
    attributes = {
        "run_id": evaluation.run_id,
        "task": evaluation.task.name,
        "graph": evaluation.graph.name,
        "simulated": spec_is_simulated(evaluation.graph.spec),  # a collector's view says so too
    }
    finish: FinishedRun[EvalSummary] = FinishedRun()
    resume = evaluation.store.command_line("eval", "--resume", evaluation.run_id)
    with (
        resumable(finish, evaluation.store, evaluation.run_id, resume, json_output=json_output),
        traced_run(trace, "eval", evaluation.run_id, attributes),
    ):
        asyncio.run(finish.run(_run(evaluation, pending, total, quiet=json_output)))
    summary = finish.result
    report = write_report(evaluation.store, evaluation.run_id)
    simulated = summary.simulated
    memory = evaluation.graph.spec.memory  # the handbook is named in every output, as the report names it
    if json_output:  # its fields for scripts, where people read the label below
        drew_on: dict[str, dict[str, object]] = {}
        if memory is not None:
            drew_on["handbook"] = {"name": memory.handbook, "top_k": memory.top_k, "topic": memory.topic}
        print_json({**summary.to_dict(include_items=show_items), **drew_on, "report": str(report)})
    else:
        if show_items:
            out.print(_items_table(summary.items))
        _print_summary(summary, evaluation.store, simulated=simulated)
        if memory is not None:
            out.print(f"handbook {escape(handbook_label(memory))}{_handbook_use_text(summary, memory.handbook)}")
        if summary.discussions is not None:
            out.print(f"discussions: {summary.discussions.text()}")
        if simulated:
            say_simulated()
        out.print(f"report: {report}")
    first = summary.nothing_answered
    if first is not None:  # it exited 0, and a script took "accuracy 0.0%" for the graph's figure
        details = evaluation.store.command_line("runs", "show", evaluation.run_id)
        retry = evaluation.store.command_line("eval", "--resume", evaluation.run_id, "--retry-errors")
        raise AgentScaleError(
            f"no item finished and no model call answered, so the run measured nothing (first: {first.item_id}: "
            f"{short(first.stopped_reason, 200)}; every error: {details}); once the model answers: {retry}"
        )


async def _run(evaluation: Evaluation, pending: set[str], total: int, *, quiet: bool) -> EvalSummary:
    progress = progress_bar(quiet=quiet, eta=True)
    done = total - len(pending)  # a resumed eval counts the items its run already scored
    rows = evaluation.store.run_items(evaluation.run_id) if done else []
    # an item asked again (--retry-errors) counts when answered: it was counted twice ("7/6 correct")
    correct = sum(1 for row in rows if row.correct and row.item_key not in pending)

    def advance(result: ItemResult) -> None:
        nonlocal correct, done
        done += 1
        correct += result.correct
        progress.update(bar, advance=1, status=f"{correct}/{done} correct")

    with progress:
        bar = progress.add_task(escape(evaluation.task.name), total=total, completed=done, status="")
        return await evaluation.run(on_item=advance)


def _handbook_use_text(summary: EvalSummary, handbook: str) -> str:
    """How many questions the handbook reached: retrieval can find nothing for most of them (a topic
    with few behaviors, BM25 with no shared word), and the run read as one that drew on it."""
    use = summary.handbook_use
    if use is None:
        return ""
    text = f": {use.text(summary.n)}"
    if summary.n and not use.shown:
        text += f" (retrieval found none for any question: see `agentscale handbook list {handbook}`)"
    return text


def _items_table(items: list[ItemResult]) -> Table:
    table = Table("item", "question", "answer", "reference", "correct", "tokens")
    for item in items:
        table.add_row(
            item.item_id,
            short(item.question, 40),
            short(item.answer, 24),
            short(item.reference, 24),
            Text("✓", style="green") if item.correct else Text("✗", style="red"),
            str(item.usage.tokens),
        )
    return table


def _print_summary(summary: EvalSummary, store: Store, *, simulated: bool) -> None:
    from agentscale.evaluate.item_records import cut_replies_note, retry_note, unfinished_note
    from agentscale.report.simulated import simulated_label

    data = summary.to_dict()
    low, high = data["ci95"]
    usage = summary.usage
    flops = "unknown" if usage.flops is None else f"{usage.flops:.3g}"
    usd = usd_shown(usage.usd)
    out.print(
        f"[bold]{escape(summary.task)}[/]: {simulated_label('accuracy', simulated)} {summary.accuracy:.1%} "
        f"({summary.correct}/{summary.n}), "
        f"95% CI [{low:.1%}, {high:.1%}]",
        markup=True,
    )
    out.print(
        f"tokens {usage.prompt_tokens}+{usage.completion_tokens} · FLOPs {flops} · {usd} · "
        f"wall latency mean {data['latency']['mean_s']:.2f}s p95 {data['latency']['p95_s']:.2f}s · "
        f"critical path mean {data['latency']['critical_path_mean_s']:.2f}s · "
        f"calls {usage.calls} (+{usage.cached_calls} cache hits)"
    )
    unfinished = summary.unfinished
    if unfinished:
        cut = unfinished[0]
        note = unfinished_note(len(unfinished), summary.n, cut.item_id, short(cut.stopped_reason, 160))
        out.print(f"[yellow]{escape(note)}[/]", markup=True)
    degraded = summary.answered_despite_failures
    if degraded:
        first = degraded[0].item_id
        out.print(
            f"[yellow]{len(degraded)} of {summary.n} items answered although some of their model calls failed; "
            f"first: {escape(first)}: {escape(short(summary.call_failures[first], 160))}[/]",
            markup=True,
        )
    if summary.cut_replies:
        out.print(f"[yellow]{escape(cut_replies_note(summary.cut_replies, summary.n))}[/]", markup=True)
    if summary.retryable and summary.run_id is not None and summary.nothing_answered is None:  # else its error says it
        out.print(f"[yellow]{escape(retry_note(store, summary.run_id, len(summary.retryable)))}[/]", markup=True)
    if summary.run_id is not None:
        out.print(f"run {summary.run_id} ({store.command_line('runs', 'show', summary.run_id)})")


def _items_the_handbook_learned_from(evaluation: Evaluation) -> str | None:
    """Items of this eval whose questions a build of its handbook learned from: measured on them, the
    handbook is measured on what taught it. A build of `--n 30` and an eval of `--n 40 --seed 1` on
    rg:gsm_symbolic shared 5 items (both draw from the generator's one pool; the measurement walk)."""
    from agentscale.memory.handbook import Handbook

    memory = evaluation.graph.spec.memory
    if memory is None:
        return None
    learned = Handbook(evaluation.store, memory.handbook, embedder=None).learned_questions()
    shared = [item.id for item in evaluation.task.items if item.question in learned]
    if not shared:
        return None
    generated = evaluation.task.name.startswith(("sim:", "rg:"))
    other = "another generator seed, --task-option seed=N" if generated else "a task file of other items"
    return (
        f"{len(shared)} of the {len(evaluation.task.items)} items (first: {shared[0]}) ask questions handbook "
        f"{memory.handbook!r} was built from: on them it is measured on what taught it; for held-out items "
        f"use {other}"
    )


def _more_than_the_task_has(n: int | None, total: int, task: str, asked_size: object = None) -> str | None:
    """`--n` beyond the task's items: all of them are evaluated, said also under --json (`--n 1500` of
    `sim:math` ran its 1,000 items without a word there), with the option that makes a generated
    task (sim:, rg:) larger; unless that size was asked and the generator has no more distinct
    questions (a reasoning-gym task holds each once), where the advice could not work."""
    if n is None or n <= total:
        return None
    if isinstance(asked_size, int) and asked_size >= n:
        distinct = f"has only {total} distinct questions with these options"
        return f"--n {n}, but task {task} {distinct}: all {total} are evaluated"
    larger = f"; a generated task takes --task-option size={n}" if task.startswith(("sim:", "rg:")) else ""
    return f"--n {n}, but task {task} has {total} items: all {total} are evaluated{larger}"
