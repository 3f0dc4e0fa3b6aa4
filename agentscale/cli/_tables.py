"""Rich tables and one-line summaries for traces and runs, shared by `run`, `optimize` and `runs show`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from agentscale.cli._console import out, short
from agentscale.graphs.result import NodeTrace, Usage
from agentscale.models.cost import usd_text

if TYPE_CHECKING:
    from pathlib import Path

    from agentscale.optimize.objective import Observation


def trace_table(trace: list[NodeTrace], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    for column in ("node", "role", "model", "tokens", "latency", "cached", "status", "answer"):
        table.add_column(column, overflow="fold", justify="right" if column in ("tokens", "latency") else "left")
    for node in trace:
        cut = node.status == "ok" and node.truncated  # its reply ended at max_tokens
        status = Text(
            "ok, cut" if cut else node.status, style="yellow" if cut else "" if node.status == "ok" else "red"
        )
        table.add_row(
            node.node_id,
            node.role,
            node.model or "—",
            f"{node.prompt_tokens}+{node.completion_tokens}" if node.route else "—",
            f"{node.latency_s:.2f}s" if node.route else "—",
            "yes" if node.cached else "",
            status,
            short(node.answer if node.status == "ok" and node.answer is not None else node.error, 48),
        )
    return table


_SOURCES = {"ceo": "the CEO", "fallback": "fallback", "initial": "the graph as written"}


def round_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """One line per round of a discussion (`RoundRecord.to_dict()`s): the decision applied and where
    it came from, its notes (a fallback's reason, cuts to fit the budget) and the round's answer. A
    CEO whose replies were unusable looked healthy: its calls were `ok`, the fallback only in --json."""
    lines = []
    for record in rounds:
        decision = record.get("decision") or {}
        source = _SOURCES.get(str(decision.get("source")), "—")
        requested = record.get("requested") or {}
        overridden = requested.get("decision") == "stop" and decision.get("decision") == "continue"
        if overridden and decision.get("source") == "ceo":  # a fallback keeps its own label
            source = "the CEO said stop, overridden"  # "(the CEO)" read as its own choice (its notes say why)
        line = f"round {record['round']}: {decision.get('decision', '—')} ({source})"
        if record.get("ran"):
            agents = decision.get("agents")
            line += f" · {agents} agent{'' if agents == 1 else 's'}, replies ≤ {decision.get('max_tokens')} tokens"
            line += f" · answer {short(str(record.get('answer')), 40)}"
        elif decision.get("decision") == "continue":  # the budget ended the discussion before the round
            line += " · not run"
        notes = list(decision.get("notes", []))
        if not record.get("ran"):  # its settings' clamps are moot ("max_tokens 191 cut to 1" of a round never run)
            notes = notes[:1] if decision.get("source") == "fallback" else []  # a fallback's reason stays
        stopped = record.get("stopped_reason")
        if stopped and not any(stopped in note for note in notes):  # a refusal the notes already give
            notes.append(stopped)
        if notes:
            line += " · " + "; ".join(short(note, 120) for note in notes)
        lines.append(line)
    return lines


def usd_shown(value: float | None) -> str:
    """A USD figure in the command's lines (`usd_text`), or "unknown USD" when a price is unknown."""
    return "unknown USD" if value is None else usd_text(value)


def format_usage(usage: Usage) -> str:
    flops = "unknown" if usage.flops is None else f"{usage.flops:.3g}"
    usd = usd_shown(usage.usd)
    return (
        f"calls {usage.calls} (+{usage.cached_calls} cached) · tokens {usage.prompt_tokens}+{usage.completion_tokens}"
        f" · FLOPs {flops} · {usd} · wall {usage.latency_s:.2f}s · critical path {usage.critical_path_s:.2f}s"
    )


def format_spend(usage: dict[str, Any]) -> str:
    """An optimization's spend (its stored `usage`): calls by stage, tokens and USD."""
    usd = usd_shown(usage.get("usd"))
    stages = usage.get("calls_by_stage") or {}
    split = " (" + ", ".join(f"{name} {calls}" for name, calls in stages.items()) + ")" if stages else ""
    return f"{usage.get('calls', 0)} model calls{split}, {usage.get('tokens', 0)} tokens, {usd}"


def format_test_score(score: dict[str, Any], *, simulated: bool) -> str:
    """A stored test score (`TestScore.to_dict`): accuracy, items and 95% interval, or why it is missing."""
    if score.get("accuracy") is None:
        return "not scored on the test split"
    low, high = score["ci95"]
    items = f" of {score['n']} items" if score.get("n") is not None else ""
    from agentscale.report.simulated import simulated_label  # loaded already by the views that print it

    label = simulated_label("test accuracy", simulated)
    return f"{label} {score['accuracy']:.1%}{items} (95% CI {low:.1%}-{high:.1%})"


def print_front(
    points: Sequence[Observation],
    tested: dict[str, tuple[float, int]],
    files: dict[str, Path],
    *,
    simulated: bool,
) -> None:
    """An optimization's Pareto front, most accurate first: train accuracy on the items each graph
    answered, with `objective.pareto` its test score (`tested`, by graph key: accuracy, items) and
    its file (`files`, named by file name, then their folder); without them the first 8 points. As
    `optimize` prints it as it ends and as `runs show` prints it after (which listed no front: only
    --json, --plot and the report had it)."""
    from agentscale.report.simulated import simulated_label

    train_label, test_label = simulated_label("train accuracy", simulated), simulated_label("test accuracy", simulated)
    columns = [f"Pareto front: {train_label} (items)", *([test_label] if tested else []), "compute", "train latency"]
    front = Table(*columns, "graph", title_justify="left")
    for point in points if files else points[:8]:
        key = point.candidate.canonical_key
        score = tested.get(key)
        test = [f"{score[0]:.1%} (n={score[1]})" if score else "—"] if tested else []
        front.add_row(
            f"{point.accuracy:.1%} ({point.n_items})",
            *test,
            f"{point.compute:.2f}",
            f"{point.latency_s:.2f}s",
            point.candidate.diagram_line() + (f" · {files[key].name}" if key in files else ""),
        )
    out.print(front)
    if files:  # the table names them by file name: with --out, the folder printed was another
        out.print(f"front graphs' YAML (front-N.yaml): {next(iter(files.values())).parent}")
