"""Reading an optimization's outcome: the graph as a text diagram and a PNG of the search.

The plot shows the best objective against the number of evaluations and the Pareto front of
accuracy against compute; it is written next to the run (`<db folder>/runs/<run_id>/search.png`).
"""

from __future__ import annotations

from pathlib import Path

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.objective import Observation


def diagram(candidate: CandidateGraph) -> str:
    """Levels of the DAG, left to right: `[assistant:small] [assistant:small] -> [vote]`."""
    level: dict[int, int] = {}
    for index in range(candidate.size):
        preds = candidate.predecessors[index]
        level[index] = 1 + max((level[p] for p in preds), default=0)
    columns = []
    for depth in range(1, max(level.values()) + 1):
        members = [i for i in range(candidate.size) if level[i] == depth]
        columns.append(" ".join(f"[{i}:{candidate.nodes[i].label()}]" for i in members))
    lines = [" -> ".join(columns)]
    for index in range(candidate.size):
        preds = candidate.predecessors[index]
        if preds:
            lines.append(f"  {index} <- {', '.join(str(p) for p in preds)}")
    if candidate.ceo is not None:
        lines.append(f"  CEO {candidate.ceo.model} over up to {candidate.ceo.max_rounds} rounds")
    return "\n".join(lines)


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
