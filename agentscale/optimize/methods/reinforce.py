"""REINFORCE over the probabilistic graph (the GPTSwarm update): numeric feedback only.

For K sampled graphs with rewards r_k, every logit moves by lr · Σ_k (r_k − b) · ∇ log p(G_k) / K,
with b the batch's mean reward (the baseline) and advantages scaled by the batch's spread so the
step size does not depend on the reward's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem


def reinforce_step(distribution: GraphDistribution, observations: list[Observation], lr: float) -> None:
    rewards = np.array([o.reward for o in observations])
    if len(rewards) < 2 or float(rewards.std()) < 1e-9:
        return
    advantages = (rewards - rewards.mean()) / (rewards.std() + 1e-9)
    for observation, advantage in zip(observations, advantages, strict=True):
        distribution.step(distribution.gradient(observation.candidate), lr * float(advantage) / len(observations))


@register
class Reinforce(SearchMethod):
    name = "reinforce"

    def __init__(
        self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, lr: float = 0.5, **options: Any
    ):
        super().__init__(problem, seed=seed, agent=agent)
        self.distribution = GraphDistribution(problem)
        self.lr = lr

    def propose(self, k: int) -> list[CandidateGraph]:
        return [self.distribution.sample(self.rng) for _ in range(k)]

    async def observe(self, observations: list[Observation], *, more: bool = True) -> None:
        await super().observe(observations, more=more)
        reinforce_step(self.distribution, observations, self.lr)
