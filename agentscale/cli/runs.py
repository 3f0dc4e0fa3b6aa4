"""`agentscale runs list|show`: what was run, when, with what result."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from agentscale.cli._console import err, out, print_json, short
from agentscale.cli._options import DbOption, JsonOption, open_store
from agentscale.cli._tables import trace_table
from agentscale.graphs.result import NodeTrace

runs_app = typer.Typer(help="Inspect stored runs.", no_args_is_help=True)


@runs_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="How many runs to show.", min=1)] = 20,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first.

    Example:

      agentscale runs list --json
    """
    runs = open_store(db).list_runs(limit)
    if json_output:
        print_json(
            [
                {
                    "run_id": r.id,
                    "kind": r.kind,
                    "status": r.status,
                    "created": r.created.isoformat(),
                    "graph": r.graph_name,
                }
                for r in runs
            ]
        )
        return
    table = Table("run_id", "kind", "status", "created", "graph")
    for r in runs:
        table.add_row(r.id, r.kind, r.status, r.created.strftime("%Y-%m-%d %H:%M:%S"), r.graph_name or "—")
    out.print(table)


@runs_app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).", show_default=False)],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show a run: its items, answers and per-node calls.

    Example:

      agentscale runs show 3f2a9c
    """
    store = open_store(db)
    run = store.get_run(run_id)
    items = store.run_items(run.id)
    calls = store.node_calls(run.id)
    data: dict[str, Any] = {
        "run_id": run.id,
        "kind": run.kind,
        "status": run.status,
        "created": run.created.isoformat(),
        "finished": run.finished.isoformat() if run.finished else None,
        "graph": run.graph_name,
        "config": json.loads(run.config_json),
        "summary": json.loads(run.summary_json),
        "error": run.error,
        "items": [
            {
                "item": item.item_key,
                "question": item.question,
                "answer": item.answer,
                "stopped_reason": item.stopped_reason,
                "usage": json.loads(item.usage_json),
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
            }
            for c in calls
        ],
    }
    if json_output:
        print_json(data)
        return
    out.print(
        f"[bold]run {run.id}[/] · {run.kind} · {run.status} · {run.created:%Y-%m-%d %H:%M:%S} · graph {run.graph_name}"
    )
    if run.error:
        out.print(f"[red]error:[/] {run.error}")
    for item in items:
        traces = [
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
            )
            for c in calls
            if c.item_key == item.item_key
        ]
        out.print(trace_table(traces, title=f"item {item.item_key}: {short(item.question, 70)}"))
        out.print(
            f"answer: {item.answer}" + (f"  [yellow](stopped: {item.stopped_reason})[/]" if item.stopped_reason else "")
        )
    if not items:
        err.print("no items recorded")
