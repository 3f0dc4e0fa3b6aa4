"""Canonical graphs for pilots and baselines: one call, n samples with a vote, wide and deep probes.

Insight 1 says tasks prefer particular models; insights 2-3 say width and depth have optima. These
shapes measure both cheaply before the search proper, and serve as the report's baselines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from agentscale.graphs.spec import MODEL_FREE_ROLES
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice
from agentscale.optimize.problem import SearchProblem


def single(alias: str) -> CandidateGraph:
    return CandidateGraph((NodeChoice("assistant", alias),), frozenset())


def model_of_single(candidate: CandidateGraph) -> str:
    """The alias a single-call graph (`single`) calls: the key of the runner's per-model results."""
    return next(n.model for n in candidate.nodes if n.model)


def self_consistency(alias: str, n: int, chooser: str = "vote") -> CandidateGraph:
    """n independent answers and one model-free `chooser` (one call when n is 1): a majority vote, or
    for code the tester, which runs each on the question's examples (a vote of sampled programs
    returns its first input: they almost never agree character for character, docs/real-models.md)."""
    if n <= 1:
        return single(alias)
    nodes = (*(NodeChoice("assistant", alias) for _ in range(n)), NodeChoice(chooser, None))
    return CandidateGraph(nodes, frozenset((i, n) for i in range(n)))


def why_no_vote(problem: SearchProblem, alias: str, chooser: str = "vote") -> str:
    """Why `max_samples` found no self-consistency of `alias`: the report's baselines then lack that
    row, and a user who hand-tunes self-consistency looks for it first."""
    smallest = self_consistency(alias, 3, chooser)  # a vote of two passes one answer on: no candidate
    if chooser not in problem.roles:
        return f"the space's roles have no '{chooser}'"
    if smallest.size > problem.max_nodes:
        return f"max_nodes {problem.max_nodes} holds no {chooser} of 3 samples ({smallest.size} nodes)"
    cost = problem.compute(smallest)
    if problem.budget is not None and cost > problem.budget:
        return f"3 samples of {alias} cost {cost:.2f} compute, over the budget of {problem.budget:g}"
    return f"no {chooser} of {alias}'s samples fits the space"


def wide(alias: str, width: int, aggregator: str) -> CandidateGraph:
    """`width` parallel answers merged by one `aggregator` node (fuser, critic or vote)."""
    model = None if aggregator in MODEL_FREE_ROLES else alias
    nodes = (*(NodeChoice("assistant", alias) for _ in range(width)), NodeChoice(aggregator, model))
    return CandidateGraph(nodes, frozenset((i, width) for i in range(width)))


def chain(alias: str, depth: int, refiner: str) -> CandidateGraph:
    """An answer refined `depth - 1` times in sequence by `refiner` nodes."""
    nodes = (NodeChoice("assistant", alias), *(NodeChoice(refiner, alias) for _ in range(depth - 1)))
    return CandidateGraph(nodes, frozenset((i, i + 1) for i in range(depth - 1)))


Shape = Callable[[str, int, str], CandidateGraph]


def led(build: Shape, ceo: CeoChoice | None) -> Shape:
    """The shape `build` with `ceo` coordinating it (unchanged for None)."""
    if ceo is None:
        return build
    return lambda alias, size, role: replace(build(alias, size, role), ceo=ceo)


def largest_fitting(problem: SearchProblem, build: Shape, alias: str, role: str) -> CandidateGraph | None:
    """The biggest graph of a shape (by node count) that fits the problem's budget and limits."""
    best = None
    for size in range(1, problem.max_nodes + 1):
        candidate = build(alias, size, role)
        if problem.fits(candidate):
            best = candidate
    return best


def max_samples(problem: SearchProblem, alias: str, chooser: str = "vote") -> CandidateGraph | None:
    """Self-consistency with as many samples as the budget and node limit allow (never a vote of two,
    which does not fit: it passes one answer on, `copies_an_input`)."""
    best = None
    for n in range(1, problem.max_nodes):
        candidate = self_consistency(alias, n, chooser)
        if problem.fits(candidate):
            best = candidate
    if best is None and problem.fits(single(alias)):
        best = single(alias)
    return best
