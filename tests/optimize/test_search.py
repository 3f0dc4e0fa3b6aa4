"""The search loop (`optimize.search.run_search`) with a scripted method and scripted scores: its stops."""

from __future__ import annotations

import asyncio

from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.methods.base import SearchMethod
from agentscale.optimize.objective import Observation
from agentscale.optimize.search import StopSearch, run_search


def chain(length: int) -> CandidateGraph:
    """A distinct graph per length: `length` assistants in a row."""
    nodes = tuple(NodeChoice("assistant", "m") for _ in range(length))
    return CandidateGraph(nodes, frozenset((i, i + 1) for i in range(length - 1)))


class Scripted(SearchMethod):
    """Proposes the graphs of `rounds` in turn (then repeats the last round)."""

    name = "scripted"

    def __init__(self, rounds: list[list[CandidateGraph]]) -> None:  # no problem needed: nothing is sampled
        self.rounds, self.history = rounds, []

    def propose(self, k: int) -> list[CandidateGraph]:
        return self.rounds[min(len(self.history) // k, len(self.rounds) - 1)] if self.history else self.rounds[0]


async def evaluate(candidate: CandidateGraph, iteration: int) -> Observation:
    return Observation(candidate, 0.5, 1.0, 0.0, 4, reward=0.5)


def test_a_refusal_ends_the_search_with_what_was_measured() -> None:
    """The spend cap refuses the third graph of an iteration: the two measured stay, the reason is the refusal's."""

    async def capped(candidate: CandidateGraph, iteration: int) -> Observation:
        if candidate == chain(3):
            raise StopSearch("max_spend.calls would be crossed")
        return await evaluate(candidate, iteration)

    method = Scripted([[chain(1), chain(2), chain(3)], [chain(4)]])
    outcome = asyncio.run(run_search(method, capped, iterations=5, samples=3))
    assert [o.candidate for o in outcome.history] == [chain(1), chain(2)] and len(method.history) == 2
    assert outcome.stopped_reason == "max_spend.calls would be crossed"


def test_the_search_converges_only_after_patience_rounds_without_a_new_graph() -> None:
    """New graphs in rounds 1-3, then the same graph again: three stale rounds end it after round 6."""
    rounds = [[chain(1)], [chain(2)], [chain(3)], [chain(3)]]
    method = Scripted(rounds)
    outcome = asyncio.run(run_search(method, evaluate, iterations=20, samples=1, patience=3))
    assert len(outcome.history) == 6 and outcome.stopped_reason == "converged: no new graph in 3 iterations"
    fresh = Scripted([[chain(n)] for n in range(1, 9)])
    assert asyncio.run(run_search(fresh, evaluate, iterations=8, samples=1)).stopped_reason == "finished 8 iterations"


def test_a_graph_proposed_twice_in_a_round_is_evaluated_once_and_observed_twice() -> None:
    """The second proposal of a graph (here renumbered: the same graph) shares the first one's
    evaluation; the method still observes every proposal, each in its own numbering."""
    a, b = NodeChoice("assistant", "a"), NodeChoice("assistant", "b")
    vote = NodeChoice("vote", None)
    first = CandidateGraph((a, b, vote), frozenset({(0, 2), (1, 2)}))
    renumbered = CandidateGraph((b, a, vote), frozenset({(0, 2), (1, 2)}))
    asked: list[CandidateGraph] = []

    async def counted(candidate: CandidateGraph, iteration: int) -> Observation:
        asked.append(candidate)
        return await evaluate(candidate, iteration)

    method = Scripted([[first, chain(2), renumbered, chain(2)]])
    outcome = asyncio.run(run_search(method, counted, iterations=1, samples=4))
    assert asked == [first, chain(2)] and [o.candidate for o in outcome.history] == [first, chain(2)]
    assert [o.candidate for o in method.history] == [first, chain(2), renumbered, chain(2)]
