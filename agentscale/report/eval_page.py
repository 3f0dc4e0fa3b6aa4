"""The report of an eval (or a plain `agentscale run`): accuracy, cost, latency, the graph, every item.

Figures are computed from the stored items, not the run's summary, so an interrupted eval reports
what it did answer.
"""

from __future__ import annotations

import json
from html import escape

from sqlalchemy import select

from agentscale.evaluate.item_records import (
    cut_replies_note,
    discussion_stats,
    handbook_use_of,
    items_asked_again,
    retry_note,
    unfinished_note,
)
from agentscale.graphs.result import Usage
from agentscale.graphs.simulated import is_simulated
from agentscale.graphs.spec import GraphSpec, handbook_label
from agentscale.graphs.validate import load_spec_text
from agentscale.report.charts import histogram
from agentscale.report.drawing import picture_from_spec
from agentscale.report.html import (
    document,
    facts,
    fmt_interval,
    fmt_number,
    fmt_pct,
    fmt_usd,
    items_section,
    paragraph,
    section,
    simulated_banner,
)
from agentscale.report.items import ITEMS, read_items
from agentscale.report.simulated import run_is_simulated, simulated_label
from agentscale.report.svg import render_svg
from agentscale.storage.db import Store
from agentscale.storage.tables import SHOWN_TIME, Run


def eval_report(store: Store, run: Run) -> str:
    items = read_items(store, run.id)
    config = json.loads(run.config_json)
    spec = load_spec_text(run.graph_yaml, f"run {run.id}", stored=True) if run.graph_yaml else None
    simulated = is_simulated(items.routes) or run_is_simulated(run)
    label = simulated_label("accuracy", simulated)
    accuracy = items.accuracy()
    usage = items.usage
    latency = items.latency()
    kind = "" if run.kind == "run" else f"{run.kind} "  # a plain run's page said "run run 7838..."
    what = f"{kind}run {run.id}" + (f" · task {config['task']}" if config.get("task") else "")
    parts = [
        f"<h1>{escape(what)}</h1>",
        paragraph(
            f"graph {run.graph_name or '—'} · {run.shown_status()} · started {run.created:{SHOWN_TIME}}"
            + (f" · finished {run.finished:{SHOWN_TIME}}" if run.finished else ""),
            css_class="sub",
        ),
    ]
    if simulated:
        parts.append(simulated_banner())
    if run.error:
        parts.append(paragraph(f"error: {run.error}", css_class="error"))
    if (partial := _partial_note(store, run, len(items.rows))) is not None:
        parts.append(paragraph(partial, css_class="error"))
    if unfinished := items.unfinished:  # the page said "9/10 right" and nothing of the item that failed
        note = unfinished_note(len(unfinished), len(items.rows), unfinished[0][0], unfinished[0][5])
        parts.append(paragraph(note, css_class="error"))
    if run.kind == "eval" and (retried := items_asked_again(store, run.id, ((row[0], row[5]) for row in items.rows))):
        parts.append(paragraph(retry_note(store, run.id, retried), css_class="error"))
    if cut := store.cut_calls_by_item(run.id):  # `eval` says so; the page said nothing of it
        parts.append(paragraph(cut_replies_note(cut, len(items.rows)), css_class="error"))
    parts.append(
        facts(
            [
                (label, fmt_pct(accuracy["value"]) if accuracy else "not scored"),
                ("95% interval (Wilson)", fmt_interval(accuracy["ci95"]) if accuracy else "—"),
                ("items", f"{accuracy['correct']}/{accuracy['n']} right" if accuracy else len(items.rows)),
                ("tokens", f"{usage.prompt_tokens:,} in + {usage.completion_tokens:,} out"),
                ("FLOPs", fmt_number(usage.flops)),
                ("USD", fmt_usd(usage.usd)),
                ("model calls", f"{usage.calls} (+{usage.cached_calls} cache hits)" + _uncounted(store, run, usage)),
                ("latency mean · p50 · p95 (wall clock)", _three(latency)),
                ("critical path mean · p50 · p95", _three(items.critical_path())),
                *_records(store, run, spec, len(items.rows)),
            ]
        )
    )
    figures = []
    if spec is not None:
        figures.append(f'<div class="drawing">{render_svg(picture_from_spec(spec))}</div>')
    if items.latencies:
        figures.append(histogram(items.latencies, "latency per item (s, wall clock)"))
    if figures:
        parts.append(section("Graph and latency", f'<div class="figure-row">{"".join(figures)}</div>'))
    parts.append(items_section("Items", "items", items.page_data(), items.trace_data()))
    return document(f"agentscale {what}", "".join(parts))


def _partial_note(store: Store, run: Run, recorded: int) -> str | None:
    """An eval's page written before its end says its figures are of part of it, and how it goes on,
    as `runs show` does: an interrupted eval's page read "100.0%, 8/8 right" with "interrupted" in
    its grey line only, and a running one's looked finished."""
    if run.kind != "eval":
        return None
    if run.in_progress():
        return (
            f"still running: these figures are of the {recorded} items recorded so far; "
            "write the report again when it ends"
        )
    if run.stopped_unfinished():
        resume = store.command_line("eval", "--resume", run.id)
        return (
            f"not finished: these figures are of the {recorded} items recorded before it stopped; "
            f"continue with: {resume}"
        )
    return None


def _records(store: Store, run: Run, spec: GraphSpec | None, questions: int) -> list[tuple[str, str]]:
    """What the items' records say beyond their answers: the handbook's reach, the discussions."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            select(ITEMS.c.handbook_json, ITEMS.c.rounds_json).where(ITEMS.c.run_id == run.id)
        ).all()
    facts_: list[tuple[str, str]] = []
    if spec is not None and spec.memory is not None:
        use = handbook_use_of(row.handbook_json for row in rows)
        facts_.append(("handbook", f"{handbook_label(spec.memory)} · {use.text(questions)}"))
    discussions = discussion_stats(row.rounds_json for row in rows)
    if discussions is not None:
        facts_.append(("discussions", discussions.text()))
    return facts_


def _three(spread: dict[str, float]) -> str:
    """Mean, median and 95th percentile of a latency spread (the sim's calls take no wall time: their
    modelled latency is the critical path, which the report did not show)."""
    return " · ".join(f"{spread[k]:.2f} s" for k in ("mean_s", "p50_s", "p95_s"))


def _uncounted(store: Store, run: Run, usage: Usage) -> str:
    """The paid calls no answered item holds (items an interruption cut short; their answers, when
    the run goes on, come from the cache): an interrupted eval's page said 218 calls where its
    ledger held 243."""
    paid = store.spend(run.id)["calls"]
    return f"; {paid} paid in all, {paid - usage.calls} by items cut short" if paid > usage.calls else ""
