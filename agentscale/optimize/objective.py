"""Scoring evaluated graphs: the scalar objective and the Pareto front.

The scalar objective is `w_acc·accuracy − w_cost·(compute / budget) − w_lat·(latency / reference)`,
so each term is roughly in [0, 1]; the latency reference is the slowest mean latency seen so far
(or 1 s before any). `pareto: true` keeps the weights for choosing a reported best but makes the
front the main output.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.space import Objective


@dataclass
class Observation:
    """One evaluation of a candidate on some items."""

    candidate: CandidateGraph
    accuracy: float
    compute: float
    latency_s: float
    n_items: int
    reward: float = 0.0
    usd: float | None = None


def scalarize(
    objective: Objective, accuracy: float, compute: float, latency_s: float, budget: float | None, latency_ref: float
) -> float:
    cost_term = compute / budget if budget else compute
    latency_term = latency_s / latency_ref if latency_ref > 0 else 0.0
    return objective.accuracy * accuracy - objective.cost * cost_term - objective.latency * latency_term


def pareto_front(points: list[Observation]) -> list[Observation]:
    """Observations no other beats on accuracy (higher), compute and latency (lower) at once."""
    front = []
    for point in points:
        dominated = any(
            other is not point
            and other.accuracy >= point.accuracy
            and other.compute <= point.compute
            and other.latency_s <= point.latency_s
            and (other.accuracy > point.accuracy or other.compute < point.compute or other.latency_s < point.latency_s)
            for other in points
        )
        if not dominated:
            front.append(point)
    unique: dict[str, Observation] = {}
    for point in sorted(front, key=lambda p: (-p.accuracy, p.compute)):
        unique.setdefault(point.candidate.canonical_key, point)
    return list(unique.values())
