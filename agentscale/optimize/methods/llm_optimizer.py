"""A TextGrad-style baseline: textual feedback from an LLM only (no numeric step, no insights,
no pilot priors). Needs `agent_model`."""

from __future__ import annotations

from typing import Any

from agentscale.errors import AgentScaleError
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import ask_agent
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem


@register
class LLMOptimizer(SearchMethod):
    name = "llm"
    uses_agent = needs_agent = True
    # it has no update of its own: such a step was a step of random search
    without_agent = "sampled the unchanged distribution, as random search does"

    def __init__(self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, **options: Any):
        if agent is None:
            raise AgentScaleError("method 'llm' needs an agent model: set optimizer.agent_model in the space")
        super().__init__(problem, seed=seed, agent=agent)
        self.distribution = GraphDistribution(problem)
        self.proposed: list[CandidateGraph] = []

    def propose(self, k: int) -> list[CandidateGraph]:
        extra, self.proposed = self.proposed, []
        return extra + [self.distribution.sample(self.rng) for _ in range(max(0, k - len(extra)))]

    async def observe(self, observations: list[Observation], *, more: bool = True) -> None:
        await super().observe(observations, more=more)
        assert self.agent is not None
        if not more:
            return
        proposed = await ask_agent(
            self.agent, self.distribution, observations, insights=False, unused=self.agent_unused
        )
        if proposed is not None:
            self.proposed.append(proposed)
