"""Scoring evaluated graphs: the scalar objective and the Pareto front.

The scalar objective is `w_acc·accuracy − w_cost·(compute / budget) − w_lat·(latency / reference)`,
so each term is roughly in [0, 1]; the latency reference is the slowest mean latency seen so far
(or 1 s before any). `pareto: true` keeps the weights for choosing the crowned graph and scores the
front's graphs on the test split too (see `space.Objective`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentscale.models.cost import known_total
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.space import Objective


@dataclass
class Observation:
    """One evaluation of a candidate on some items.

    `outcomes` holds each item's verdict (item id -> right) when known: crowning compares graphs on
    the items they share (paired), which separates them with far fewer items than their means do.
    """

    candidate: CandidateGraph
    accuracy: float
    compute: float
    latency_s: float
    n_items: int
    reward: float = 0.0
    usd: float | None = None
    outcomes: dict[str, bool] = field(default_factory=dict, repr=False)


def scalarize(
    objective: Objective, accuracy: float, compute: float, latency_s: float, budget: float | None, latency_ref: float
) -> float:
    cost_term = compute / budget if budget else compute
    latency_term = latency_s / latency_ref if latency_ref > 0 else 0.0
    return objective.accuracy * accuracy - objective.cost * cost_term - objective.latency * latency_term


def pareto_front(points: list[Observation], *, latency: bool = False) -> list[Observation]:
    """The points no other point beats: at least as accurate and as cheap (and, with `latency`, as
    fast), and strictly better in one of them; one point per distinct graph, and one graph of those
    level on every dimension (the fastest: two graphs at the same accuracy and compute were both
    kept, drawn, and with `pareto: true` both scored on the test split); most accurate first.

    Latency is a dimension only when asked (when the objective weighs it): a front drawn and read as
    accuracy against compute must not keep a point that another equals in accuracy at lower compute.
    """

    def values(point: Observation) -> tuple[float, ...]:
        return (-point.accuracy, point.compute, point.latency_s) if latency else (-point.accuracy, point.compute)

    def dominates(other: Observation, point: Observation) -> bool:
        mine, theirs = values(point), values(other)
        return all(t <= m for t, m in zip(theirs, mine, strict=True)) and theirs != mine

    front = [p for p in points if not any(dominates(other, p) for other in points)]
    unique: dict[str, Observation] = {}
    tied: dict[tuple[float, ...], Observation] = {}  # graphs level on every dimension: the fastest stands
    for point in sorted(front, key=lambda p: (-p.accuracy, p.compute, p.latency_s)):
        if point.candidate.canonical_key not in unique and values(point) not in tied:
            unique[point.candidate.canonical_key] = tied[values(point)] = point
    return list(unique.values())


def run_front(observations: list[Observation], objective: Objective, *, minibatch: int) -> list[Observation]:
    """A run's Pareto front, as its summary, report and plot show it: every graph on all the train
    items it answered (minibatches and races pooled), not one minibatch's luck.

    Only graphs measured on more items than one search minibatch stand on it (or, in a run where no
    graph was, those measured on the most): a graph the search saw once, right on 6 items of 6,
    was a "100%" point that put the crowned graph, raced on 20 items, off the front. Pooling alone
    cannot prevent that, as such a graph has nothing to pool.
    """
    graphs = pooled(observations, objective.accuracy)
    most = max((graph.n_items for graph in graphs), default=0)
    measured = [graph for graph in graphs if graph.n_items > minibatch or graph.n_items == most]
    return pareto_front(measured, latency=objective.latency > 0)


def pooled(observations: list[Observation], accuracy_weight: float) -> list[Observation]:
    """One observation per distinct graph, its verdicts on every item it answered pooled (a front
    speaks of graphs, not of single minibatches: one lucky minibatch must not put a graph on it); its
    latency the mean per item answered, each item counted once (see `_latency_per_item`), and its USD
    the sum of its evaluations'."""
    groups: dict[str, list[Observation]] = {}
    for observation in observations:
        groups.setdefault(observation.candidate.canonical_key, []).append(observation)
    merged = []
    for group in groups.values():
        outcomes: dict[str, bool] = {}
        for observation in group:
            outcomes.update(observation.outcomes)
        last = group[-1]
        if outcomes:
            n, accuracy = len(outcomes), sum(outcomes.values()) / len(outcomes)
        else:
            n = sum(o.n_items for o in group)
            accuracy = sum(o.accuracy * o.n_items for o in group) / max(1, n)
        latency = _latency_per_item(group)
        reward = last.reward + accuracy_weight * (accuracy - last.accuracy)
        usd = known_total(o.usd for o in group)
        merged.append(Observation(last.candidate, accuracy, last.compute, latency, n, reward, usd, outcomes))
    return merged


def _latency_per_item(group: list[Observation]) -> float:
    """A graph's mean latency per item over its evaluations, each item counted once at its latest
    evaluation (whose mean stands for it), as accuracy counts it: the search's minibatch items answered
    again in the crowning race counted twice, and a CEO-led graph's front row said 3.21 s where the
    report's train figure, over the race's items, said 3.31 s. Evaluations without per-item verdicts
    count their items as they are."""
    seen: set[str] = set()
    weighted, counted = 0.0, 0
    for observation in reversed(group):
        fresh = len(observation.outcomes.keys() - seen) if observation.outcomes else observation.n_items
        seen.update(observation.outcomes)
        weighted += observation.latency_s * fresh
        counted += fresh
    return weighted / max(1, counted)
