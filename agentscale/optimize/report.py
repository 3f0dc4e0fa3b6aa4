"""Reading an optimization's outcome: the graph as a text diagram and a PNG of the search.

The plot shows the best objective against the number of evaluations and the Pareto front of
accuracy against compute; it is written next to the run (`<db folder>/runs/<run_id>/search.png`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentscale.evaluate.stats import format_p
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.objective import Observation

if TYPE_CHECKING:
    from agentscale.storage.db import Store


def diagram(candidate: CandidateGraph) -> str:
    """Levels of the DAG, left to right: `[assistant:small] [assistant:small] -> [vote]`."""
    lines = [candidate.levels()[0]]
    for index in range(candidate.size):
        preds = candidate.predecessors[index]
        if preds:
            lines.append(f"  {index} <- {', '.join(str(p) for p in preds)}")
    if candidate.ceo is not None:
        lines.append(f"  CEO {candidate.ceo.model} over up to {candidate.ceo.max_rounds} rounds")
    return "\n".join(lines)


def scored_later(store: Store, best_path: str, run_id: str) -> str:
    """Why a `--no-test` run's crowned graph has no test score, and the command that scores it: said
    by `optimize` and by the report (it said "not scored", neither why nor how)."""
    return f"--no-test; {store.command_line('eval', best_path, '--split-of', run_id)} scores the crowned graph"


def advantage_sentence(advantage: Mapping[str, Any]) -> str:
    """The crowned graph against the best single call(s) on the test items, paired (`Advantage.to_dict`)."""
    over = advantage["over"]
    who = over[0] if len(over) == 1 else " / ".join(over) + " (tied)"
    if advantage.get("crowned_is_the_single"):  # "+0.0 points [+0.0, +0.0] ... p=1" compared it with itself
        return f"the crowned graph is the single call of {over[0]}, the best single call on the test items"
    low, high = advantage["ci95"]
    return (
        f"crowned graph minus the best single call ({who}) on the same {advantage['n']} test items: "
        f"{100 * advantage['difference']:+.1f} points [{100 * low:+.1f}, {100 * high:+.1f}], paired; "
        f"right only with the crowned graph {advantage['only_first_right']}, only with the single "
        f"{advantage['only_second_right']}, exact McNemar p={format_p(advantage['p_value'])}"
    )


def outcome_notes(summary: Mapping[str, Any]) -> list[str]:
    """What a finished run concluded, in words, from its stored summary (`OptimizeResult.to_dict`): why
    its graph was crowned, its paired advantage over the best single call, and its warnings ("add
    train items"). The report and `runs show` print them as `optimize` did: without them a reader of
    the report alone never learnt that the train split could not separate the crown."""
    notes = []
    reason = (summary.get("crowning") or {}).get("reason")
    if reason:
        notes.append(f"crowned: {reason}")
    advantage = summary.get("advantage")
    if advantage:
        if "crowned_is_the_single" not in advantage:  # a summary stored before the key: its crowned graph's name
            crowned = (summary.get("best") or {}).get("name")
            advantage = {**advantage, "crowned_is_the_single": crowned == f"single call of {advantage['over'][0]}"}
        notes.append(advantage_sentence(advantage))
    notes += [f"warning: {warning}" for warning in summary.get("warnings", [])]
    return notes


def write_plot(
    curve: list[tuple[int, float]],
    history: list[Observation],
    front: list[Observation],
    path: Path,
    *,
    simulated: bool,
) -> Path | None:
    """A PNG with the best-objective curve and the accuracy/compute scatter with its front.

    `simulated`: the run's models are `sim/` routes; the picture says SIMULATED in its title and on the
    accuracy axis, as every other place does (a PNG travels without the report that labels it).
    Returns None (no plot) when matplotlib is not installed: the plot is a convenience.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    if curve:
        left.plot([c[0] for c in curve], [c[1] for c in curve], drawstyle="steps-post")
    left.set_xlabel("evaluations")
    left.set_ylabel("best objective so far")
    left.set_title("search progress")
    right.scatter(
        [o.compute for o in history], [o.accuracy for o in history], s=12, alpha=0.4, label="search (minibatch)"
    )
    ordered = sorted(front, key=lambda o: o.compute)
    right.plot([o.compute for o in ordered], [o.accuracy for o in ordered], "o-", color="C3", label="Pareto front")
    right.set_xlabel("compute (1B-call units)")
    right.set_ylabel("SIMULATED train accuracy" if simulated else "train accuracy")
    right.legend()
    right.set_title("accuracy vs compute")
    title = "SIMULATED: sim/ models, not a real model's accuracy" if simulated else "agentscale optimize"
    if simulated:
        figure.suptitle(title, color="C3")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, metadata={"Title": title})  # the label travels with the file too
    plt.close(figure)
    return path
