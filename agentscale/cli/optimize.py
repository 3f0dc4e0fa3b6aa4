"""`agentscale optimize`: search a space for the best graph under its budget."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agentscale.cli._console import err, out, print_json, say_simulated, warn_if
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
    executor_config,
    make_gateway,
    output_file,
    refuse_ignored,
    refuse_missing_file,
    say_where_items_run,
)
from agentscale.cli._progress import progress_bar
from agentscale.cli._space_notes import space_notes
from agentscale.cli._tables import format_spend, print_front, usd_shown
from agentscale.cli.tracing import TraceOption, check_tracing, traced_run
from agentscale.errors import AgentScaleError
from agentscale.graphs.io import refuse_unusable_output, write_output

if TYPE_CHECKING:
    from agentscale.optimize.progress import Progress as SearchProgress
    from agentscale.optimize.runner import Optimization, OptimizeResult
    from agentscale.storage.db import Store


def optimize_command(
    space_file: Annotated[
        Path | None, typer.Argument(help="Search-space YAML (omit with --resume).", show_default=False)
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="agent-reinforce, random, bayes, reinforce or llm (default: the space's).")
    ] = None,
    seed: Annotated[  # max: optimize.space.MAX_SEED, not imported (it costs the CLI 0.4 s at start)
        int | None, typer.Option(help="Search seed (default: the space's).", min=0, max=2**32 - 1)
    ] = None,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out", parser=output_file("best.yaml"), metavar="<path>", help="Also write the best graph's YAML here."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Project calls, tokens and cost; spend nothing.")] = False,
    no_test: Annotated[
        bool, typer.Option("--no-test", help="Stop after crowning: do not score the test split (no test spend).")
    ] = False,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue an interrupted optimization run.")] = None,
    task_file: Annotated[
        Path | None,
        typer.Option(
            "--task",
            help="With --resume: where the run's task file is now, if it was moved (the same bytes: checked).",
            show_default=False,
        ),
    ] = None,
    retry_errors: RetryErrorsOption = False,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="Items answered at once per evaluation (per worker with --executor ray); the evaluations of "
            "one race step or search round run side by side, and each model endpoint still takes at most its "
            "max_concurrency calls at once. Default 8; --resume keeps the run's unless given.",
            min=1,
            show_default=False,
        ),
    ] = None,
    executor: ExecutorOption = None,
    ray_address: RayAddressOption = None,
    ray_workers: RayWorkersOption = None,
    trace: TraceOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Search a space for the graph that scores best under its per-question budget.

    Examples:

      agentscale optimize graphs/quickstart-space.yaml

      agentscale optimize space.yaml --method bayes --seed 3 --out best.yaml

      agentscale optimize space.yaml --dry-run

      agentscale optimize space.yaml --executor ray --ray-address ray://head:10001

      agentscale optimize --resume 3f2a9c0d1e2b

      agentscale optimize --resume 3f2a9c0d1e2b --retry-errors

      agentscale optimize --resume 3f2a9c0d1e2b --task moved/items.jsonl
    """
    from agentscale.optimize.report import write_plot
    from agentscale.optimize.runner import DEFAULT_CONCURRENCY, Optimization
    from agentscale.report import write_report

    if out_file is not None:  # refused now, not after the search (the copy crashed on a directory)
        refuse_unusable_output(out_file, "best.yaml", shown=f"--out {out_file}")
        if space_file is not None and out_file.exists() and out_file.resolve() == space_file.resolve():
            raise AgentScaleError(f"--out {out_file} is the space file: the best graph would replace it; give another")
    if dry_run and resume is None:  # --out wrote nothing and said nothing; the others were ignored
        given = {
            "--out": out_file is not None,
            "--executor": executor is not None,
            "--concurrency": concurrency is not None,
            "--trace": trace is not None and trace.strip().lower() != "off",
        }
        refuse_ignored(
            given,
            "only projects the search's spend (nothing runs)",
            by="--dry-run",
        )
    else:
        check_tracing(trace)
    check_retry_errors(retry_errors, resume)
    if resume is None:  # before the database is opened: a mistyped space file, or a dry run, leaves none
        if task_file is not None:  # the space names its task
            raise AgentScaleError("--task gives a resumed run's moved task file: the space names its task (task:)")
        if space_file is None:
            raise AgentScaleError("give a search-space file (or --resume RUN_ID)")
        refuse_missing_file(space_file)
        if dry_run:
            _dry_run(space_file, method, seed, json_output, score_test=not no_test)
            return
    gateway = make_gateway(db, no_cache, existing=resume is not None, run_files=True, resume=resume)
    where = executor_config(gateway, resume, executor, ray_address, ray_workers)
    if resume is not None:
        if space_file is not None:
            raise AgentScaleError("--resume takes the space from the stored run; do not give a space file")
        refuse_ignored(  # --dry-run was ignored too: the resume ran and paid
            {"--method": method is not None, "--seed": seed is not None, "--no-test": no_test, "--dry-run": dry_run},
            "continues the stored run with its own method, seed and test split",
        )
        optimization = Optimization.resume(
            resume, gateway, executor=where, concurrency=concurrency, retry_errors=retry_errors, task_file=task_file
        )
        if optimization.store.get_run(optimization.run_id).status == "done" and not retry_errors:
            # it replayed every evaluation and printed the result again without a word
            err.print(f"run {optimization.run_id} is done: its result again, replayed from what it stored")
    else:
        assert space_file is not None  # checked above
        optimization = Optimization.from_file(
            space_file,
            gateway,
            method=method,
            seed=seed,
            concurrency=concurrency or DEFAULT_CONCURRENCY,
            executor=where,
            score_test=not no_test,
        )
    if not json_output:
        err.print(
            f"optimize run [bold]{optimization.run_id}[/] · space {escape(optimization.space.name)} · "
            f"method {optimization.method_name} · task {escape(optimization.task.name)} "
            f"({len(optimization.train)} train / {len(optimization.test)} test items)",
            markup=True,
        )
    say_where_items_run(optimization.executor_config, json_output=json_output)
    if resume is None:  # validate's notes: the space runs as it is, so said once, as it starts
        for note in space_notes(optimization.space, optimization.task.name, optimization.train):
            warn_if(note)
    attributes = {
        "run_id": optimization.run_id,
        "space": optimization.space.name,
        "method": optimization.method_name,
        "simulated": optimization.simulated,
    }
    finish: FinishedRun[OptimizeResult] = FinishedRun()
    repeated = ("--out", str(out_file.resolve())) if out_file is not None else ()  # not stored: said again
    resume = optimization.store.command_line("optimize", "--resume", optimization.run_id, *repeated)
    with (
        resumable(finish, optimization.store, optimization.run_id, resume, json_output=json_output),
        traced_run(trace, "optimize", optimization.run_id, attributes),
    ):
        asyncio.run(finish.run(_run(optimization, quiet=json_output)))
    result = finish.result
    simulated = result.simulated
    plot_file = result.artifacts / "search.png"
    plot = write_plot(result.curve, result.history, result.pareto, plot_file, simulated=simulated)
    report = write_report(optimization.store, result.run_id, result.artifacts / "report.html")
    if out_file is not None:  # after the report: a path that fails now loses neither it nor the run
        try:
            write_output(out_file, result.best_yaml)
        except AgentScaleError as exc:
            raise AgentScaleError(f"{exc}; the best graph is in {result.best_path}, the report {report}") from None
    if json_output:
        data = result.to_dict()
        if out_file is not None:
            data["best"]["path"] = str(out_file)
        print_json({**data, "report": str(report)})
        return
    _print_report(result, optimization.store, out_file, plot, simulated=simulated, test_split=optimization.score_test)
    if simulated:
        say_simulated()
    out.print(f"report: {report}")


def _dry_run(space_file: Path, method: str | None, seed: int | None, json_output: bool, *, score_test: bool) -> None:
    from agentscale.optimize.dry_run import project_space_file

    figures = project_space_file(space_file, method=method, seed=seed, score_test=score_test)
    if json_output:
        print_json({"dry_run": True, **figures})
        return
    usd = usd_shown(figures["usd"])
    stages = ", ".join(f"{name} {calls}" for name, calls in figures["calls_by_stage"].items())
    out.print(
        f"projected: {figures['evaluations']} graph evaluations, {figures['items_answered']} answered items, "
        f"{figures['calls']} model calls ({stages}), {figures['tokens']} tokens, {usd}"
    )
    out.print(f"({figures['note']})")


async def _run(optimization: Optimization, *, quiet: bool) -> OptimizeResult:
    from agentscale.report.simulated import simulated_label

    progress = progress_bar(quiet=quiet, unit="search iteration")
    accuracy = simulated_label("best minibatch acc", optimization.simulated)

    def update(state: SearchProgress) -> None:
        """The search's own count ("graphs searched"): the summary's evaluations also count the singles'
        race, the crowning and the test split, and both said "evaluations"."""
        best = "—" if state.best_accuracy is None else f"{state.best_accuracy:.1%}"
        progress.update(
            bar,
            completed=state.iteration,
            description=state.stage,
            status=f"{state.evaluations} graphs searched · {accuracy} {best} · {state.spent_calls} calls",
        )

    with progress:
        bar = progress.add_task("search", total=optimization.space.optimizer.iterations, status="")
        return await optimization.run(on_progress=update)


def _print_report(
    result: OptimizeResult, store: Store, out_file: Path | None, plot: Path | None, *, simulated: bool, test_split: bool
) -> None:
    from agentscale.optimize.report import advantage_sentence, diagram, scored_later
    from agentscale.report.simulated import simulated_label

    best = result.best_train
    train_label, test_label = simulated_label("train accuracy", simulated), simulated_label("test accuracy", simulated)
    out.print(
        f"[bold]best graph[/] ({train_label} {best.accuracy:.1%} on {best.n_items} items, compute {best.compute:.2f}):",
        markup=True,
    )
    out.print(diagram(best.candidate))
    if result.crowning is not None:
        out.print(f"crowned: {result.crowning.reason}")
    table = Table("graph", test_label, "95% CI", "compute", "latency")
    scored = [("best (optimized)", result.best)] if result.best else []
    for alias, score in result.singles.items():
        scored.append((f"single call of {alias}{_single_mark(result, alias)}", score))
    scored += [(s.name, s) for key, s in result.baselines.items() if key != "single"]
    for name, score in scored:
        low, high = score.ci95
        table.add_row(
            name,
            f"{score.accuracy:.1%} (n={score.n})",
            f"[{low:.1%}, {high:.1%}]",
            f"{score.compute:.2f}",
            f"{score.latency_s:.2f}s",
        )
    # --no-test, or a spend cap before the test split: an empty table with its headers read as a bug
    unscored = "no graph scored on the test split"
    if not test_split:  # --no-test said neither why nor how to score the crowned graph later
        unscored += f" ({scored_later(store, str(out_file or result.best_path), result.run_id)})"
    out.print(table if scored else unscored)
    if result.advantage is not None:
        out.print(advantage_sentence(result.advantage.to_dict()))
    for warning in result.warnings:
        out.print(f"[yellow]warning:[/] {escape(warning)}", markup=True)
    tested = {key: (score.accuracy, score.n) for key, score in result.front_tests.items()}  # objective.pareto
    print_front(result.pareto, tested, result.front_paths, simulated=simulated)
    out.print(f"spent: {format_spend(result.usage)} · {_evaluations(result)} · {result.stopped_reason}")
    out.print(f"best graph YAML: {out_file or result.best_path}" + (f" · plot: {plot}" if plot else ""))
    out.print(f"run {result.run_id} ({store.command_line('runs', 'show', result.run_id)})")


def _single_mark(result: OptimizeResult, alias: str) -> str:
    """Which best single a row is: the baseline chosen on the train split (`baselines.single` in
    --json) and the best on the test split (what the advantage compares with) can differ, and one
    "(best single)" label for either read as the same claim."""
    on_test = result.advantage.over if result.advantage else []
    chosen = result.baselines.get("single")
    on_train = chosen is not None and chosen is result.singles.get(alias)
    tie = ", tie" if len(on_test) > 1 else ""
    if alias in on_test:  # "best single" alone beside "best single on test" at the same score read as two claims
        return f" (best single on train and test{tie})" if on_train else f" (best single on test{tie})"
    return " (best single on train)" if on_train else ""


def _evaluations(result: OptimizeResult) -> str:
    """The run's evaluations as its report counts them, with those a resume read back said apart:
    "35 evaluations (1 replayed from the run)" read as one of the 35, and the report said 36."""
    if not result.replayed:
        return f"{result.evaluations} evaluations"
    everything = result.evaluations + result.replayed
    return f"{everything} evaluations ({result.replayed} read back from the stored run, {result.evaluations} run now)"
