"""Random search: uniform samples from the same valid, within-budget graph space."""

from __future__ import annotations

from typing import Any

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.problem import SearchProblem


@register
class RandomSearch(SearchMethod):
    name = "random"

    def __init__(self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, **options: Any):
        super().__init__(problem, seed=seed, agent=agent)
        self.distribution = GraphDistribution(problem)

    def propose(self, k: int) -> list[CandidateGraph]:
        return [self.distribution.sample(self.rng) for _ in range(k)]
