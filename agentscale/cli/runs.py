"""`agentscale runs list|show`: what was run, when, with what result."""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agentscale.cli._console import err, out, print_json, say_simulated, short, terminal_safe
from agentscale.cli._options import DbOption, JsonOption, open_store, refuse_ignored
from agentscale.cli._tables import format_spend, format_test_score, print_front, round_lines, trace_table
from agentscale.errors import AgentScaleError
from agentscale.graphs.result import NodeTrace
from agentscale.storage import SQLITE_MAX_INTEGER
from agentscale.storage.owner import owner_alive

if TYPE_CHECKING:
    from agentscale.graphs.spec import Memory
    from agentscale.storage.db import Store
    from agentscale.storage.tables import NodeCall, Run, RunItem, Trial

runs_app = typer.Typer(help="Inspect stored runs.", no_args_is_help=True)


@runs_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="How many runs to show.", min=1, max=SQLITE_MAX_INTEGER)] = 20,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first.

    Example:

      agentscale runs list --json
    """
    from agentscale.storage.db import database_file
    from agentscale.storage.tables import SHOWN_TIME

    path = database_file(db)
    runs = []  # none and no empty database made; said, as an empty list alone read as lost runs
    if path.exists():
        store = open_store(db, reads_only=True)
        runs = store.list_runs(limit)
        if len(runs) == limit and (total := store.count_runs()) > limit:  # neither the table nor --json said so
            err.print(f"{limit} of {total} runs shown, newest first; --limit {total} shows them all")
    else:
        err.print(f"no database at {path}: nothing has run with it (check --db or AGENTSCALE_DB)")
    if json_output:
        print_json(
            [
                {
                    "run_id": r.id,
                    "kind": r.kind,
                    "status": r.status,
                    "process_gone": r.process_gone(),
                    "created": r.created.isoformat(),
                    "graph": r.graph_name,
                }
                for r in runs
            ]
        )
        return
    table = Table("run_id", "kind", "status", "created", "graph")
    for r in runs:
        table.add_row(r.id, r.kind, r.shown_status(), r.created.strftime(SHOWN_TIME), r.graph_name or "—")
    out.print(table)


@runs_app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).", show_default=False)],
    plot: Annotated[bool, typer.Option("--plot", help="Optimization runs: write the search plot (PNG).")] = False,
    html: Annotated[
        bool, typer.Option("--html", help="Also write the run's HTML report (see `agentscale report`) and name it.")
    ] = False,
    wrong: Annotated[
        bool,
        typer.Option(
            "--wrong", help="Only the items scored wrong or with a failed call (the run's figures stay whole)."
        ),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit", min=1, help="At most this many items (in item order), and a line saying how many more."
        ),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show a run: its items, answers and per-node calls (optimizations: trials, best graph, front).

    Examples:

      agentscale runs show 3f2a9c --plot

      agentscale runs show 3f2a9c --html

      agentscale runs show 3f2a9c --wrong --limit 20
    """
    from agentscale.report import default_report_path, write_report
    from agentscale.report.simulated import run_is_simulated

    store = open_store(db, reads_only=True)
    run = store.get_run(run_id)
    if plot and run.kind != "optimize":  # it was ignored without a word
        raise AgentScaleError(f"--plot draws an optimization's search; {run.made_by()}")
    report = str(write_report(store, run.id)) if html else None
    if report is not None:
        err.print(f"report: {report}")
    elif default_report_path(store, run.id).exists():  # the one its command wrote (--json said null)
        report = str(default_report_path(store, run.id))
    elif run.status == "done" and run.kind in ("eval", "optimize") and not json_output:
        if _just_finished(run):  # its command marks the run done, then writes the report (≈ 1 s)
            err.print("its report is being written by the command that ran it")
        else:  # stopped between marking the run done and writing its report (a kill at the very end)
            write = store.command_line("runs", "show", run.id, "--html")
            err.print(f"its report was not written; write it with: {write}")
    if run.kind == "optimize":
        refuse_ignored(
            {"--wrong": wrong, "--limit": limit is not None},
            "is an optimization: it shows trials, not items",
            by=f"run {run.id}",
        )
        show_optimization(store, run, json_output=json_output, plot=plot, report=report)
        return
    from agentscale.report.items import accuracy_of
    from agentscale.storage.tables import SHOWN_TIME

    every_item = sorted(store.run_items(run.id), key=lambda item: _natural_order(item.item_key))
    every_call = store.node_calls(run.id)
    # a scored run's accuracy as its report counts it; none for a build (its verdicts are its source run's)
    scored = [item.correct for item in every_item if item.correct is not None]
    accuracy = accuracy_of(sum(scored), len(scored)) if run.kind != "handbook" else None
    items, calls, matching = _chosen_items(every_item, every_call, wrong=wrong, limit=limit)
    left_out = len(every_item) - len(items)
    data: dict[str, Any] = {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "process_gone": run.process_gone(),
        "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "graph": run.graph_name,
        "config": json.loads(run.config_json),
        "summary": json.loads(run.summary_json),
        "error": run.error,
        "report": report,
        "simulated": run_is_simulated(run),
        "accuracy": accuracy,
        "items": [
            {
                "item": item.item_key,
                "question": item.question,
                "answer": item.answer,
                "reference": item.reference,  # and the verdict, as the report shows them (an eval's)
                "correct": item.correct,
                "detail": item.detail,
                "stopped_reason": item.stopped_reason,
                "usage": json.loads(item.usage_json),
                **({"rounds": json.loads(item.rounds_json)} if item.rounds_json is not None else {}),
                # a graph with `memory:`: the behaviors shown and cited (only the database had them)
                **({"handbook": json.loads(item.handbook_json)} if item.handbook_json is not None else {}),
            }
            for item in items
        ],
        "calls": [
            {
                "item": c.item_key,
                "node": c.node_id,
                "role": c.role,
                "route": c.route,
                "status": c.status,
                "answer": c.answer,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
                "cached": c.cached,
                "error": c.error,
                "truncated": c.truncated,
            }
            for c in calls
        ],
    }
    memory = _memory_of(run)
    if memory is not None:  # as `eval --json` names it (the items carried its use, not the handbook)
        data["handbook"] = {"name": memory.handbook, "top_k": memory.top_k, "topic": memory.topic}
    if wrong or limit is not None:
        data["items_shown"] = {"wrong_only": wrong, "limit": limit, "left_out": left_out}
    if json_output:
        print_json(data)
        return
    out.print(
        f"[bold]run {run.id}[/] · {run.kind} · {run.shown_status()} · {run.created:{SHOWN_TIME}} · "
        f"graph {escape(run.graph_name or '—')}{_where_it_ran(run)}",
        markup=True,
    )
    if run.error:
        out.print(f"[red]error:[/] {escape(run.error)}", markup=True)
    _say_how_a_gone_run_goes_on(store, run)
    if data["simulated"]:
        say_simulated()
    if accuracy is not None:
        _say_the_score(accuracy, simulated=data["simulated"])
        _say_what_did_not_finish(store, run, every_item)
    traces = _traces_by_item(calls)
    for item in items:
        title = f"item {item.item_key}: {short(item.question, 70)}"
        out.print(trace_table(traces.get(item.item_key, []), title=title))
        for line in round_lines(json.loads(item.rounds_json) if item.rounds_json is not None else []):
            out.print(line, markup=False)
        stopped = f"  [yellow](stopped: {escape(terminal_safe(item.stopped_reason))})[/]" if item.stopped_reason else ""
        verdict = "" if item.correct is None else f" · {'right' if item.correct else 'wrong'}"
        shown = "" if item.reference is None else escape(terminal_safe(str(item.reference)))
        reference = "" if item.reference is None else f" · reference {shown}{verdict}"
        answer = "—" if item.answer is None else escape(terminal_safe(str(item.answer)))  # it printed "None"
        out.print(f"answer: {answer}{reference}{stopped}", markup=True)
        if item.handbook_json is not None:
            use = json.loads(item.handbook_json)
            shown, cited = ", ".join(use["behaviors"]) or "none", ", ".join(use["cited"]) or "none"
            out.print(f"handbook {use['handbook']}: shown {shown}; cited {cited}", markup=False)
    answered = {item.item_key for item in every_item}
    unanswered = sorted(traces.keys() - answered, key=_natural_order)
    for key in unanswered:  # a question stopped before its answer: the calls that had finished (paid)
        out.print(trace_table(traces[key], title=f"item {key}: stopped before its answer"))
    if wrong and limit is not None and matching > len(items):  # "38 of the 40 not shown" hid how many were wrong
        err.print(
            f"{len(items)} of the {matching} items scored wrong or with a failed call shown (--limit); "
            f"{len(every_item) - matching} others not shown (--wrong)"
        )
    elif left_out:
        cut = (("--wrong", wrong), ("--limit", matching > len(items)))  # the flags that left items out
        chosen_by = " ".join(flag for flag, left in cut if left)
        err.print(f"{left_out} of the {len(every_item)} items not shown ({chosen_by})")
    if not every_item:
        above = " (the node calls that finished before it stopped are above)" if unanswered else ""
        asked = data["summary"].get("question")  # a question stopped before its answer: its run keeps it
        err.print(f"no items recorded{above}" + (f"; the question: {short(asked, 200)}" if asked else ""))


def _chosen_items(
    items: list[RunItem], calls: list[NodeCall], *, wrong: bool, limit: int | None
) -> tuple[list[RunItem], list[NodeCall], int]:
    """The items `--wrong` and `--limit` leave (a 5,000-item eval printed 6.4 MB), their calls, and
    how many items `--wrong` chose before `--limit` cut them; the calls of a question stopped before
    its answer stay, as they have no item to choose by."""
    if not wrong and limit is None:
        return items, calls, len(items)
    chosen = items
    if wrong:
        failed = {call.item_key for call in calls if call.status == "failed"}
        chosen = [item for item in chosen if item.correct is False or item.item_key in failed]
    shown = chosen[:limit] if limit is not None else chosen
    keys = {item.item_key for item in shown}
    stored = {item.item_key for item in items}
    kept = [call for call in calls if call.item_key in keys or call.item_key not in stored]
    return shown, kept, len(chosen)


def _traces_by_item(calls: list[NodeCall]) -> dict[str, list[NodeTrace]]:
    """The stored node calls as traces for the trace tables, per item, in their stored order. Grouped
    once: scanning every call for each item made `runs show` quadratic (5,000 three-node items took
    36 s, of which 54% went to reading 75 million call attributes)."""
    traces: dict[str, list[NodeTrace]] = defaultdict(list)
    for c in calls:
        traces[c.item_key].append(
            NodeTrace(
                c.node_id,
                c.role,
                model=c.route,
                route=c.route,
                status=c.status,
                answer=c.answer,
                prompt_tokens=c.prompt_tokens,
                completion_tokens=c.completion_tokens,
                latency_s=c.latency_s,
                cached=c.cached,
                error=c.error,
                truncated=c.truncated,
            )
        )
    return traces


def _just_finished(run: Run) -> bool:
    """Finished moments ago by a process still alive: the command that ran it may be writing its
    report now (a process that stays alive, a notebook using the API, writes none)."""
    from agentscale.storage.tables import as_utc, utcnow

    if run.finished is None or not owner_alive(run.owner):
        return False
    return (utcnow() - as_utc(run.finished)).total_seconds() < _REPORT_WRITING_S


_REPORT_WRITING_S = 30.0  # a report takes about a second to write after its run is marked done


def _crowned_drawing(store: Store, run: Run, crowned: Trial) -> Path | None:
    """The crowned graph's picture beside the run's report: drawn once after the run finished (a
    resume may crown another graph); none where this reader may not write (`runs show` is a read,
    and failed with "cannot write best.svg" in another's folder)."""
    from agentscale.optimize.trials import candidate_from_json
    from agentscale.report import picture_from_candidate, write_drawing
    from agentscale.storage.tables import as_utc

    target = store.run_folder(run.id) / "best.svg"
    finished = as_utc(run.finished).timestamp() if run.finished else None
    if target.exists() and (finished is None or target.stat().st_mtime >= finished):  # None: stopped, not going on
        return target
    picture = picture_from_candidate(candidate_from_json(crowned.candidate_json), f"{run.graph_name}-best")
    try:
        return write_drawing(picture, target)
    except AgentScaleError:
        return None


def show_optimization(store: Store, run: Run, *, json_output: bool, plot: bool, report: str | None = None) -> None:
    """Trials in order, then the stored report (best graph, test scores, baselines, front)."""
    from agentscale.optimize.objective import Observation
    from agentscale.optimize.report import diagram, outcome_notes, write_plot
    from agentscale.optimize.space import stored_space
    from agentscale.optimize.trials import candidate_from_json, recorded_front, stored_front
    from agentscale.report.optimize_page import crown_recorded, crowned_trial, recorded_crown
    from agentscale.report.simulated import run_is_simulated, simulated_label
    from agentscale.storage.tables import SHOWN_TIME

    trials = store.trials(run.id)
    summary = json.loads(run.summary_json)
    crowned = crowned_trial(trials, summary)
    in_progress, recorded = run.in_progress(), crown_recorded(summary)
    drawing = None
    if crowned is not None and recorded and not in_progress:  # the crowned graph's picture, as in the report
        drawing = _crowned_drawing(store, run, crowned)
    written = store.run_folder(run.id) / "search.png"  # by optimize as it finished
    picture = written if written.exists() else None  # named with or without --plot (it said null)
    if plot:
        history = [
            Observation(candidate_from_json(t.candidate_json), t.accuracy, t.compute, t.latency_s, t.n_items, t.reward)
            for t in trials
            if t.kind == "search"
        ]
        curve, best = [], float("-inf")
        for index, observation in enumerate(history, start=1):
            best = max(best, observation.reward)
            curve.append((index, best))
        front = stored_front(store, run.id, stored_space(run), recorded_front(summary) if not in_progress else None)
        picture = write_plot(curve, history, front, written, simulated=run_is_simulated(run))
    data = {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "process_gone": run.process_gone(),
        "created": run.created.isoformat(),
        "space": run.graph_name,
        "summary": summary,
        "error": run.error,
        "plot": str(picture) if picture else None,
        "drawing": str(drawing) if drawing else None,
        "report": report,
        "simulated": run_is_simulated(run),
        "trials": [
            {
                "seq": t.seq,
                "iteration": t.iteration,
                "kind": t.kind,
                "accuracy": t.accuracy,
                "n": t.n_items,
                "compute": t.compute,
                "latency_s": t.latency_s,
                "reward": t.reward,
                "tokens": t.tokens,
                "graph": candidate_from_json(t.candidate_json).describe(),
            }
            for t in trials
        ],
    }
    if json_output:
        print_json(data)
        return
    out.print(
        f"[bold]optimization {run.id}[/] · space {escape(str(run.graph_name))} · {run.shown_status()} · "
        f"{run.created:{SHOWN_TIME}}{_where_it_ran(run)}",
        markup=True,
    )
    _say_how_a_gone_run_goes_on(store, run)
    simulated = data["simulated"]
    if simulated:
        say_simulated()
    accuracy = simulated_label("accuracy", simulated)  # as the report labels it
    table = Table("seq", "iter", "kind", accuracy, "n", "compute", "objective", "graph")
    for t in trials:
        candidate = candidate_from_json(t.candidate_json)
        graph = candidate.diagram_line()
        table.add_row(
            str(t.seq),
            str(t.iteration),
            t.kind,
            f"{t.accuracy:.1%}",
            str(t.n_items),
            f"{t.compute:.2f}",
            f"{t.reward:.3f}",
            graph,
        )
    out.print(table)
    if crowned is not None and in_progress and "crowned" in summary:  # recorded as the crowning ended
        out.print(f"crowned graph (trial {crowned.seq}; the run is scoring it on the test split):")
        out.print(diagram(candidate_from_json(crowned.candidate_json)))
    elif crowned is not None and in_progress:
        out.print(f"leading graph so far (trial {crowned.seq}; the run is still running, nothing is crowned yet):")
        out.print(diagram(candidate_from_json(crowned.candidate_json)))
    elif crowned is not None and not recorded:
        out.print(f"leading graph when the run stopped (trial {crowned.seq}; nothing was crowned):")
        out.print(diagram(candidate_from_json(crowned.candidate_json)))
    elif crowned is not None:
        out.print(f"crowned graph (trial {crowned.seq})" + (f", drawn in {drawing}:" if drawing else ":"))
        out.print(diagram(candidate_from_json(crowned.candidate_json)))
    best = summary.get("best")
    if best:
        out.print(f"best graph: {best.get('path')} · {format_test_score(best, simulated=simulated)}")
        for kind, score in summary.get("baselines", {}).items():
            named = f" ({score['name']})" if score.get("name") else ""  # runs stored before 2026-12-03 lack it
            chosen = ", the best on the train split" if kind == "single" else ""
            out.print(f"baseline {kind}{named}{chosen}: {format_test_score(score, simulated=simulated)}")
        # every single call's test score: the advantage compares with the best on the test split, which
        # runs show named nowhere when another single led on the train split (the reports audit)
        for alias, score in (summary.get("singles") or {}).items():
            out.print(f"single call of {alias}: {format_test_score(score, simulated=simulated)}")
        _print_front(store, run, summary, simulated=simulated)
        out.print(f"stopped: {summary.get('stopped_reason')} · spent {format_spend(summary.get('usage', {}))}")
        for note in outcome_notes(summary):
            out.print(escape(note))
    else:  # an interrupted or running search has no summary: what it paid is in the ledger (the report said it)
        untested = recorded_crown(summary)
        if untested and not in_progress:  # crowned, then stopped during its test split
            out.print(f"best graph: {untested.get('path')} · not scored on the test split (the run stopped first)")
        out.print(f"spent so far: {format_spend(dict(store.spend(run.id)))}")
    if run.error:
        out.print(f"[red]error:[/] {escape(run.error)}", markup=True)
    if picture:
        out.print(f"plot: {picture}")


def _print_front(store: Store, run: Run, summary: dict[str, Any], *, simulated: bool) -> None:
    """A finished optimization's Pareto front as `optimize` printed it, with `objective.pareto` each
    graph's test score and file (`front-N.yaml`, in the folder named)."""
    from agentscale.optimize.space import stored_space
    from agentscale.optimize.trials import recorded_front, stored_front

    recorded = recorded_front(summary)
    if recorded is None:
        return
    points = stored_front(store, run.id, stored_space(run), recorded)
    listed = {str(point.get("graph")): point for point in summary["pareto"]}
    tested: dict[str, tuple[float, int]] = {}
    files: dict[str, Path] = {}
    for point in points:
        stored = listed.get(point.candidate.describe(), {})
        key = point.candidate.canonical_key
        if isinstance(stored.get("test"), dict):
            tested[key] = (stored["test"]["accuracy"], stored["test"]["n"])
        if stored.get("path"):
            files[key] = Path(stored["path"])
    print_front(points, tested, files, simulated=simulated)


def _where_it_ran(run: Run) -> str:
    """ " · on ray (...)" for a run whose items ran on Ray, as its --resume will (only --json said so)."""
    stored = json.loads(run.config_json or "{}").get("executor") or {}
    if stored.get("kind") != "ray":
        return ""
    settings = [f"{name} {stored[name]}" for name in ("address", "workers") if stored.get(name) is not None]
    return " · on ray" + (f" ({escape(', '.join(settings))})" if settings else "")


def _memory_of(run: Run) -> Memory | None:
    """The handbook a run's graph drew on (its `memory:`), if any."""
    from agentscale.graphs.validate import load_spec_text

    if not run.graph_yaml:
        return None
    return load_spec_text(run.graph_yaml, f"run {run.id}", stored=True).memory


def _natural_order(key: str) -> tuple[str | int, ...]:
    """Item keys in input order (`2` before `10`): items are stored as they finish, which for a
    batch of questions answered side by side read `item 3, 2, 4, 1, 5`."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", key)))


@runs_app.command("optuna")
def optuna_command(
    run_id: Annotated[str, typer.Argument(help="Optimization run id (a unique prefix is enough).", show_default=False)],
    storage: Annotated[
        str | None,
        typer.Option(help="Optuna storage URL (default: sqlite:///<db folder>/optuna.db).", show_default=False),
    ] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: agentscale-RUN_ID).")] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Overwrite a study of that name that another run, or no run, wrote.")
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Write an optimization's search as an Optuna study (needs agentscale\\[optuna]) for optuna-dashboard.

    Each search evaluation is a trial with two objectives, accuracy and compute; re-export replaces the
    run's study (a study of that name from elsewhere only with --replace).

    Example:

      agentscale runs optuna 3f2a9c

      optuna-dashboard sqlite:///.agentscale/optuna.db
    """
    from agentscale.tracking.optuna_study import export_study, shown_storage, sqlite_storage

    store = open_store(db, reads_only=True)
    url = storage or sqlite_storage(store.path.parent.resolve() / "optuna.db")
    exported = export_study(store, run_id, url, study, replace=replace)
    shown = shown_storage(exported.storage)  # its password hidden
    if not exported.trials:  # an empty study in the dashboard said nothing of why
        run = store.get_run(run_id)
        err.print(
            f"[yellow]run {run.id} ({run.status}) stored no search evaluation: the study has no trial[/]", markup=True
        )
    if json_output:
        print_json({"storage": shown, "study": exported.study_name, "trials": exported.trials})
        return
    out.print(f"study {exported.study_name}: {exported.trials} trials in {shown}")
    out.print(f"view it with: optuna-dashboard {shlex.quote(shown)}")


def _say_the_score(accuracy: dict[str, Any], *, simulated: bool) -> None:
    """A scored run's accuracy (`runs show` of an eval printed every item's calls and never the
    accuracy)."""
    from agentscale.report.simulated import simulated_label

    low, high = accuracy["ci95"]
    label = simulated_label("accuracy", simulated)
    out.print(
        f"{label} {accuracy['value']:.1%} ({accuracy['correct']}/{accuracy['n']} scored items), "
        f"95% CI [{low:.1%}, {high:.1%}]"
    )


def _say_what_did_not_finish(store: Store, run: Run, items: list[RunItem]) -> None:
    """How many items ended early and, for an eval, how to ask those with failed calls again, as the
    eval's summary and report say: with `--limit` or `--wrong` the line said only the score, and the
    items cut short were among those not shown."""
    from agentscale.evaluate.item_records import ended_early, items_asked_again, retry_note, unfinished_note

    unfinished = [item for item in items if ended_early(item.stopped_reason)]
    if unfinished:
        first = unfinished[0]
        note = unfinished_note(len(unfinished), len(items), first.item_key, short(first.stopped_reason, 160))
        out.print(f"[yellow]{escape(note)}[/]", markup=True)
    if run.kind != "eval":  # `eval --resume` takes an eval only
        return
    again = items_asked_again(store, run.id, ((item.item_key, item.stopped_reason) for item in items))
    if again:
        out.print(f"[yellow]{escape(retry_note(store, run.id, again))}[/]", markup=True)


def _say_how_a_gone_run_goes_on(store: Store, run: Run) -> None:
    """A run whose process died says how to go on: a resume, or the same command again (its paid
    calls answered from the response cache)."""
    failed_build = run.kind == "handbook" and run.status == "failed"  # a failed build goes on when run again
    if not (run.stopped_unfinished() or failed_build):
        return
    reasons = {
        "created": "it was made but has not started (stopped before it began?)",
        "interrupted": "it was interrupted",
        "failed": "it failed (error above)",
    }
    why = reasons.get(run.status, "its process has ended without finishing it")
    if run.kind in ("eval", "optimize"):
        resume = store.command_line(run.kind, "--resume", run.id)
        err.print(f"{why}; continue with: {resume}")
    elif run.kind == "run":  # a question asked by `agentscale run`, the Python API or a served graph
        err.print(f"{why}; asked again with the same graph (response cache on), the calls it paid are not paid again")
    else:
        err.print(f"{why}; the same command again goes on (calls already paid come from the response cache)")
