"""`agentscale handbook build|list|show|search|prune|export|import`: the behavior handbook."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agentscale.cli._console import Interrupted, err, out, print_json, say_simulated, short, write_stdout
from agentscale.cli._finish import FinishedRun
from agentscale.cli._options import (
    DbOption,
    JsonOption,
    NoCacheOption,
    make_gateway,
    open_store,
    output_file,
    parse_options,
    refuse_ignored,
)
from agentscale.cli._progress import progress_bar
from agentscale.errors import AgentScaleError
from agentscale.graphs.io import MAX_FILE_BYTES, load_graph_spec, refuse_unusable_output, write_output

if TYPE_CHECKING:
    from agentscale.memory.build import BuildReport, HandbookBuilder
    from agentscale.storage.db import Store
    from agentscale.storage.tables import BehaviorRow

handbook_app = typer.Typer(
    help="Behavior handbooks: distil reusable behaviors from solved problems, and reuse them (eval --handbook).",
    no_args_is_help=True,
)

NameArg = Annotated[str, typer.Argument(help="Handbook name.", show_default=False)]


@handbook_app.command("build")
def build_command(
    handbook: Annotated[str, typer.Option("--handbook", help="Handbook to add the behaviors to (created if new).")],
    task: Annotated[
        str | None, typer.Option("--task", help="Solve items of this task: rg:<name>, humaneval, a JSONL file...")
    ] = None,
    from_run: Annotated[
        str | None, typer.Option("--from-run", help="Learn from the answered items of this stored run instead.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Model that solves, reflects and extracts: a litellm route or an alias (see --graph)."
        ),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option("--api-base", help="Base URL of an OpenAI-compatible server for --model.")
    ] = None,
    api_key_env: Annotated[
        str | None, typer.Option("--api-key-env", help="Environment variable holding the API key for --model.")
    ] = None,
    graph: Annotated[
        Path | None, typer.Option("--graph", help="Take model aliases (models:) from this graph YAML.")
    ] = None,
    n: Annotated[int | None, typer.Option("--n", help="Items to learn from (default: all).", min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the item sample.", min=0)] = 0,
    scorer: Annotated[
        str | None, typer.Option(help="Scorer for JSONL tasks: exact, numeric, choice, math, code.")
    ] = None,
    task_option: Annotated[
        list[str] | None,
        typer.Option("--task-option", help="Task generator option KEY=VALUE (repeatable), e.g. max_digits=1."),
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic stored with the behaviors (default: the task's name).")
    ] = None,
    correct_only: Annotated[
        bool, typer.Option("--correct-only", help="Extract only from solutions whose answer was checked correct.")
    ] = False,
    max_behaviors: Annotated[int, typer.Option(help="Behaviors kept per item at most.", min=1)] = 5,
    temperature: Annotated[
        float, typer.Option(help="Sampling temperature of the pipeline's calls.", min=0, max=2)
    ] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Max tokens per call.", min=1)] = 1024,
    concurrency: Annotated[int, typer.Option(help="Items processed at once.", min=1)] = 4,
    structured_output: Annotated[
        bool,
        typer.Option(
            "--structured-output",
            help="Send the extraction's JSON schema with the call (vLLM constrains decoding to it).",
        ),
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
    no_cache: NoCacheOption = False,
) -> None:
    """Solve → reflect → extract: distil behaviors (name + one-line instruction) into a handbook.

    Each item is solved (or, with --from-run, its stored solution is used), the model reflects on the
    solution, then extracts behaviors as JSON. Names become behavior_snake_case; instructions under 20
    characters or containing the item's answer are dropped; near-duplicates merge into one behavior.

    Examples:

      agentscale handbook build --task rg:gsm_symbolic --n 50 \\
          --model openai/gpt-4o-mini --handbook math

      agentscale handbook build --task data.jsonl --scorer numeric \\
          --model hosted_vllm/Qwen/Qwen2.5-7B-Instruct \\
          --api-base http://127.0.0.1:8000/v1 --handbook math

      agentscale handbook build --from-run 3f2a9c0d1e2b --handbook math
    """
    from agentscale.graphs.simulated import is_simulated
    from agentscale.memory.build import BuildSettings, HandbookBuilder
    from agentscale.memory.build_inputs import build_model, run_topic
    from agentscale.memory.handbook import Handbook
    from agentscale.tasks import load_task
    from agentscale.tasks.registry import task_topic

    if (task is None) == (from_run is None):
        raise AgentScaleError("give exactly one of --task or --from-run")
    if from_run is not None:
        refuse_ignored(
            {"--n": n is not None, "--seed": seed != 0, "--scorer": bool(scorer), "--task-option": bool(task_option)},
            "learns from the stored run's items as they were answered and scored",
            by="--from-run",
        )
    gateway = make_gateway(db, no_cache)
    assert gateway.store is not None
    aliases = load_graph_spec(graph).models if graph is not None else None
    run = gateway.store.get_run(from_run) if from_run is not None else None
    resolved = build_model(model, api_base=api_base, api_key_env=api_key_env, aliases=aliases, run=run)
    settings = BuildSettings(
        temperature=temperature,
        max_tokens=max_tokens,
        max_behaviors=max_behaviors,
        concurrency=concurrency,
        correct_only=correct_only,
        structured_output=structured_output,
    )
    book = Handbook(gateway.store, handbook)
    if task is not None:
        options = parse_options(task_option or [])
        loaded = load_task(task, scorer=scorer, options=options).sample(n, seed)
        builder = HandbookBuilder(gateway, book, resolved, settings, topic=topic or task_topic(task))
        config = {"n": n, "seed": seed, "scorer": scorer, "options": options}
        label, total = f"{handbook} ← {task}", len(loaded.items)
        report = _with_progress(lambda: builder.from_task(loaded, config=config), builder, total, label, json_output)
    else:
        assert run is not None
        builder = HandbookBuilder(gateway, book, resolved, settings, topic=topic or run_topic(run))
        label, total = f"{handbook} ← run {run.id}", len(gateway.store.run_items(run.id))
        report = _with_progress(lambda: builder.from_run(run.id), builder, total, label, json_output)
    simulated = is_simulated([resolved.route])
    if json_output:
        print_json({**report.to_dict(), "simulated": simulated})
    else:
        _print_build(report, gateway.store)
        if simulated:
            say_simulated(err)
    if report.items and report.failed == report.items:  # exit 0 with an empty handbook hid it from every later eval
        details = gateway.store.command_line("runs", "show", report.run_id)
        raise AgentScaleError(f"the model calls of every item failed, so nothing was learned (the errors: {details})")
    if report.items and not report.behaviors:  # said only as "0 in the handbook" among the counts
        err.print(
            f"[yellow]warning:[/] handbook {escape(handbook)!r} is empty: no item gave a usable behavior "
            "(the skipped counts say why); eval --handbook refuses an empty handbook",
            markup=True,
        )


def _with_progress(
    start: Callable[[], Coroutine[Any, Any, BuildReport]], builder: HandbookBuilder, total: int, label: str, quiet: bool
) -> BuildReport:
    """The build's report; a Ctrl-C (or SIGTERM) that lands as the build ends lets it be shown
    (`FinishedRun`, as eval and optimize do): the build was stored done while the command said
    "interrupted; run the same command again", and running it again built everything a second time."""
    progress = progress_bar(quiet=quiet)
    finish: FinishedRun[BuildReport] = FinishedRun()
    with progress:
        bar = progress.add_task(escape(label), total=total, status="")

        def advance(report: BuildReport) -> None:
            progress.update(bar, completed=report.items, status=f"{report.added} added, {report.merged} merged")

        builder.on_item = advance
        try:
            return asyncio.run(finish.run(start()))
        except KeyboardInterrupt:  # asyncio.run re-raises Ctrl-C (or SIGTERM) once the build is cancelled
            if finish.finished:
                return finish.result
            progress.stop()
    kept = f"behaviors extracted so far are kept (run {builder.run_id})" if builder.run_id else "nothing was built"
    cached = " (calls already paid come from the response cache)" if builder.gateway.settings.cache else ""
    err.print(f"interrupted; {kept}; run the same command again to go on{cached}")
    if quiet:
        print_json({"run_id": builder.run_id, "status": "interrupted", "handbook": builder.handbook.name})
    raise Interrupted()


def _print_build(report: BuildReport, store: Store) -> None:
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(report.rejected.items())) or "none"
    # "0 solved correctly" read as all wrong for a run of questions, whose answers nothing checks
    checked = f"{report.correct} solved correctly" + (f", {report.unchecked} not checked" if report.unchecked else "")
    err.print(
        f"[bold]{escape(report.handbook)}[/]: {report.items} items ({checked}), "
        f"{report.proposed} behaviors proposed → {report.added} added, {report.merged} merged; "
        f"{report.behaviors} in the handbook",
        markup=True,
    )
    unchecked = f", {report.skipped_unchecked} unchecked solution(s)" if report.skipped_unchecked else ""
    err.print(
        f"skipped: {report.malformed} malformed extraction(s), {report.failed} failed item(s), "
        f"{report.skipped_wrong} wrong solution(s){unchecked}; rejected behaviors: {rejected}"
    )
    usage = report.usage
    err.print(
        f"tokens {usage.prompt_tokens}+{usage.completion_tokens} · calls {usage.calls} "
        f"(+{usage.cached_calls} cache hits) · run {report.run_id} "
        f"({store.command_line('runs', 'show', report.run_id)})"
    )


def _behavior_dict(row: BehaviorRow, topics: dict[int, list[str]]) -> dict[str, Any]:
    from agentscale.memory.handbook import behavior_record

    return {**behavior_record(row, topics.get(row.id or 0, [])), "embedding": row.embedding_model}


@handbook_app.command("list")
def list_command(
    handbook: Annotated[
        str | None, typer.Argument(help="Handbook name (omit to list handbooks).", show_default=False)
    ] = None,
    topic: Annotated[str | None, typer.Option("--topic", help="Only behaviors of this topic.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List handbooks, or the behaviors of one with their usage counters.

    Examples:

      agentscale handbook list

      agentscale handbook list math --json
    """
    from agentscale.memory.handbook import Handbook, list_handbooks
    from agentscale.storage.db import database_file
    from agentscale.storage.tables import SHOWN_TIME

    if handbook is None:
        if topic is not None:
            raise AgentScaleError("--topic selects behaviors of one handbook: name it (agentscale handbook list NAME)")
        exists = database_file(db).exists()
        books = list_handbooks(open_store(db, reads_only=True)) if exists else []  # no empty database made
        if json_output:
            # ISO times, as runs list's and the behaviors' own (str() of a datetime wrote a space)
            kept = [{k: v for k, v in b.items() if k != "revision"} for b in books]
            print_json([{**b, "created": b["created"].isoformat()} for b in kept])
            return
        table = Table("handbook", "behaviors", "created")
        for b in books:
            table.add_row(b["handbook"], str(b["behaviors"]), b["created"].strftime(SHOWN_TIME))
        out.print(table)
        if not books:
            err.print("no handbooks yet; build one with: agentscale handbook build --task T --model M --handbook NAME")
        return
    book = Handbook(open_store(db, reads_only=True), handbook, embedder=None)
    if topic is not None:
        book.check_topic(topic, "--topic")
    rows = book.behaviors(topic)
    if json_output:
        topics = book.topics()
        print_json([_behavior_dict(r, topics) for r in rows])
        return
    table = Table()
    table.add_column("behavior", no_wrap=True)  # names are what users type: never cut them
    table.add_column("retrieved · cited (✓ ✗)", no_wrap=True, justify="right")
    table.add_column("instruction")
    for r in rows:
        table.add_row(
            r.name,
            f"{r.times_retrieved} · {r.times_cited} ({r.times_cited_correct} {r.times_cited_wrong})",
            short(r.instruction, 90),
        )
    out.print(table)
    err.print(f"{len(rows)} behavior(s)")


@handbook_app.command("show")
def show_command(
    handbook: NameArg,
    behavior: Annotated[str, typer.Argument(help="Behavior name.", show_default=False)],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show one behavior: instruction, counters and every proposal merged into it (provenance).

    Example:

      agentscale handbook show math behavior_inclusion_exclusion_principle
    """
    from agentscale.memory.handbook import Handbook, source_record

    book = Handbook(open_store(db, reads_only=True), handbook, embedder=None)
    row = book.get(behavior)
    sources = book.sources(row)
    data = _behavior_dict(row, book.topics())
    data["sources"] = [source_record(s) for s in sources]
    if json_output:
        print_json(data)
        return
    topics = ", ".join(data["topics"]) or "—"
    label = "topics" if len(data["topics"]) > 1 else "topic"
    out.print(f"[bold]{escape(row.name)}[/] ({escape(handbook)}; {label} {escape(topics)})", markup=True)
    out.print(row.instruction)
    out.print(
        f"retrieved {row.times_retrieved} · cited {row.times_cited} · in correct answers {row.times_cited_correct}"
        f" · in wrong answers {row.times_cited_wrong} · merged proposals {row.merged}"
    )
    table = Table("run", "item", "proposed as", "similarity", "instruction", title="provenance", title_justify="left")
    for s in sources:
        similarity = "first" if s.similarity is None else f"{s.similarity:.2f}"
        table.add_row(s.run_id or "—", s.item_id or "—", s.proposed_name, similarity, short(s.instruction, 60))
    out.print(table)


@handbook_app.command("search")
def search_command(
    handbook: NameArg,
    query: Annotated[str, typer.Argument(help="What the behaviors should help with.", show_default=False)],
    k: Annotated[int, typer.Option("--k", help="How many behaviors.", min=1)] = 5,
    topic: Annotated[str | None, typer.Option("--topic", help="Only behaviors of this topic.")] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Retrieve the behaviors a question would get (embeddings with agentscale\\[embed], else BM25).

    Example:

      agentscale handbook search math \\
          "a train covers 120 km in 90 minutes; speed in m/s?"
    """
    from agentscale.memory.handbook import Handbook
    from agentscale.memory.retrieve import Retriever

    if not query.strip():
        raise AgentScaleError("the query is empty: give the question the behaviors should help with")
    book = Handbook(open_store(db, existing=True), handbook)
    if topic is not None:
        book.check_topic(topic, "--topic")
    retriever = Retriever(book)
    found = retriever.search(query, k, topic=topic)
    if json_output:
        print_json([r.to_dict() for r in found])
        return
    if not found:  # an empty table with its headers said less
        shared = " shares a word with the query (BM25)" if retriever.method == "bm25" else " matches"
        err.print(f"no behavior{shared}")
        return
    table = Table("#")
    table.add_column("behavior", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("instruction")
    for rank, r in enumerate(found, start=1):
        table.add_row(str(rank), r.name, f"{r.score:.3f}", short(r.instruction, 80))
    out.print(table)
    err.print(f"{len(found)} result(s) by {retriever.method}")


@handbook_app.command("prune")
def prune_command(
    handbook: NameArg,
    min_uses: Annotated[
        int | None,
        typer.Option(
            "--min-uses",
            help="Alone: remove behaviors retrieved ≥ N times but cited < N times. "
            "With --unhelpful: the scored citations needed before judging.",
            min=1,
        ),
    ] = None,
    unhelpful: Annotated[
        bool,
        typer.Option("--unhelpful", help="Remove behaviors whose citing answers were mostly wrong (--min-accuracy)."),
    ] = False,
    min_accuracy: Annotated[
        float | None,
        typer.Option(
            help="With --unhelpful: keep behaviors whose citing answers are right this often (0-1; default 0.5).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be removed.")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Remove behaviors that did not earn their place (counters come from runs and evals with the handbook).

    Examples:

      agentscale handbook prune math --min-uses 3 --unhelpful

      agentscale handbook prune math --min-uses 5 --dry-run
    """
    from agentscale.memory.handbook import DEFAULT_MIN_ACCURACY, Handbook

    if min_accuracy is not None and not unhelpful:  # ignored: --min-uses alone pruned as it does, without a word
        raise AgentScaleError("--min-accuracy judges citing answers only with --unhelpful: add --unhelpful, or drop it")
    book = Handbook(open_store(db, existing=True), handbook, embedder=None)
    accuracy = DEFAULT_MIN_ACCURACY if min_accuracy is None else min_accuracy
    removed = book.prune(min_uses=min_uses, unhelpful=unhelpful, min_accuracy=accuracy, dry_run=dry_run)
    left = len(book.behaviors()) - (len(removed) if dry_run else 0)  # a dry run removed none of them
    if json_output:
        print_json({"handbook": handbook, "removed": [r.name for r in removed], "remaining": left, "dry_run": dry_run})
        return
    verb = "would remove" if dry_run else "removed"
    for r in removed:
        err.print(
            f"{verb} {r.name} (retrieved {r.times_retrieved}, cited {r.times_cited}, "
            f"correct {r.times_cited_correct}, wrong {r.times_cited_wrong})"
        )
    err.print(f"{verb} {len(removed)} behavior(s); {left} remain")


@handbook_app.command("delete")
def delete_command(
    handbook: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask (needed when stdin is not a terminal).")] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Delete a handbook and its behaviors (a build that learned nothing leaves an empty one).

    Runs that drew on it keep their records; resuming one needs a handbook of that name again.
    `export` first to keep a copy.

    Example:

      agentscale handbook delete scratch --yes
    """
    from agentscale.memory.handbook import Handbook

    book = Handbook(open_store(db, existing=True), handbook, embedder=None)
    count = len(book.behaviors())  # also: an unknown handbook is an error before the question
    if not yes:
        if not sys.stdin.isatty():
            raise AgentScaleError(f"deleting handbook {handbook!r} ({count} behaviors): give --yes to do it unasked")
        if not typer.confirm(f"delete handbook {handbook!r} and its {count} behaviors?", err=True):
            raise AgentScaleError("nothing deleted")
    removed = book.delete()
    if json_output:
        print_json({"handbook": handbook, "deleted": removed})
    else:
        err.print(f"deleted handbook {escape(handbook)} ({removed} behaviors)")


@handbook_app.command("export")
def export_command(
    handbook: NameArg,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--out",
            parser=output_file("handbook.json"),
            metavar="<path>",
            help="Write to this file instead of stdout.",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Write a handbook as JSON (behaviors, counters, provenance) to stdout or a file.

    Example:

      agentscale handbook export math > math.json
    """
    from agentscale.memory.handbook import Handbook, dump_export

    text = dump_export(Handbook(open_store(db, reads_only=True), handbook, embedder=None).export())
    if output is None:
        write_stdout(text)
    else:
        refuse_unusable_output(output, f"{handbook}.json")
        write_output(output, text)
        err.print(f"wrote {output}")


def _read_export(file: Path) -> str:
    """An export's text, from a file or '-' (stdin): UTF-8, a byte-order mark allowed (as graph and
    task files are read), at most MAX_FILE_BYTES (`handbook import /dev/zero` read until the kernel's
    OOM killer stopped it); a folder or another encoding (PowerShell's `>` writes UTF-16) is named,
    not a traceback."""
    source = "stdin" if str(file) == "-" else str(file)
    if source != "stdin" and not file.exists():
        raise AgentScaleError(f"{file}: file not found")
    if source != "stdin" and file.is_dir():
        raise AgentScaleError(f"{file}: is a directory, not a file written by `handbook export`")
    try:
        if source == "stdin":
            data = sys.stdin.buffer.read(MAX_FILE_BYTES + 1)
        else:
            with file.open("rb") as stream:
                data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise AgentScaleError(f"{source}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_FILE_BYTES:
        raise AgentScaleError(f"{source}: over {MAX_FILE_BYTES // 2**20} MiB: not a file written by `handbook export`")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise AgentScaleError(
            f"{source}: not UTF-8 text (byte {exc.start}); write the export with `handbook export NAME -o FILE`"
        ) from None


@handbook_app.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A file written by `handbook export` ('-' for stdin).")],
    handbook: Annotated[
        str | None, typer.Option("--handbook", help="Import into this handbook (default: the exported name).")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Load an exported handbook; behaviors merge with existing ones as on build (same name, near-duplicate).

    Example:

      agentscale handbook import other.json --handbook math
    """
    from agentscale.memory.handbook import Handbook, check_handbook_name, import_handbook

    if handbook is not None:  # an option's error, not the file's; "" imported into the export's name
        check_handbook_name(handbook)
    text = _read_export(file)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AgentScaleError(f"{file}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    store = open_store(db)
    try:
        report = import_handbook(store, document, handbook)
    except AgentScaleError as exc:  # "behaviors[0]: needs a string 'instruction'" named no file
        raise AgentScaleError(f"{'stdin' if str(file) == '-' else file}: {exc}") from None
    name = handbook or str(document.get("handbook"))
    total = len(Handbook(store, name, embedder=None).behaviors())
    if json_output:
        print_json({"handbook": name, **report.to_dict(), "behaviors": total})
        return
    err.print(f"{name}: {len(report.added)} added, {len(report.merged)} merged; {total} behavior(s) in the handbook")
