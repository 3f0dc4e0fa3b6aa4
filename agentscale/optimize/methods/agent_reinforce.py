"""Agent-REINFORCE: REINFORCE's sample → gradient → update becomes sample → feedback → update.

- Pilot (insight 1): each model alone at equal compute (as many samples plus a vote as the budget
  allows) and with a single call; the model distribution leans toward the winners.
- Probes (insights 2-3): a wide graph and a deep chain of the best model; the node-count and edge
  priors lean toward the better shape.
- Each iteration: sample K graphs; update with the numeric REINFORCE step (always), then with textual
  feedback: an LLM agent's validated JSON update when `agent_model` is set, else the insights as
  deterministic rules. A graph the agent proposes is evaluated in the next iteration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import InsightRules, agent_prompt, apply_agent_update, log, parse_agent_update
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.methods.reinforce import reinforce_step
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import chain, largest_fitting, max_votes, single, wide
from agentscale.optimize.problem import SearchProblem

PRIOR_STRENGTH = 4.0


@register
class AgentReinforce(SearchMethod):
    name = "agent-reinforce"

    def __init__(
        self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, lr: float = 0.5, **options: Any
    ):
        super().__init__(problem, seed=seed, agent=agent)
        self.distribution = GraphDistribution(problem)
        self.lr = lr
        self.rules = InsightRules()
        self.phase = "pilot"
        self.proposed: list[CandidateGraph] = []
        self.rejected_updates = 0

    # proposals ----------------------------------------------------------------------------------
    def propose(self, k: int) -> list[CandidateGraph]:
        if self.phase == "pilot":
            return self._pilot()
        if self.phase == "probe":
            probes = self._probes()
            return probes + [self.distribution.sample(self.rng) for _ in range(max(0, k - len(probes)))]
        extra, self.proposed = self.proposed, []
        return extra + [self.distribution.sample(self.rng) for _ in range(max(0, k - len(extra)))]

    def _pilot(self) -> list[CandidateGraph]:
        graphs: dict[str, CandidateGraph] = {}
        for alias in self.problem.aliases:
            for candidate in (single(alias), max_votes(self.problem, alias)):
                if candidate is not None and self.problem.fits(candidate):
                    graphs.setdefault(candidate.canonical_key, candidate)
        return list(graphs.values())

    def _best_model(self) -> str:
        scores: dict[str, list[float]] = {}
        for observation in self.history:
            models = {n.model for n in observation.candidate.nodes if n.model}
            if len(models) == 1:
                scores.setdefault(models.pop(), []).append(observation.reward)
        return max(scores, key=lambda a: float(np.mean(scores[a]))) if scores else self.problem.aliases[0]

    def _probes(self) -> list[CandidateGraph]:
        alias = self._best_model()
        roles = self.problem.roles
        aggregator = next((r for r in ("fuser", "vote", "critic") if r in roles), "assistant")
        refiner = next((r for r in ("critic", "assistant") if r in roles), "assistant")
        probes = []
        for candidate in (
            largest_fitting(self.problem, wide, alias, aggregator),
            largest_fitting(self.problem, chain, alias, refiner),
        ):
            if candidate is not None and candidate.size > 1:
                probes.append(candidate)
        self._probe_shapes = probes
        return probes

    # updates ------------------------------------------------------------------------------------
    async def observe(self, observations: list[Observation]) -> None:
        await super().observe(observations)
        if self.phase == "pilot":
            self._lean_toward_winning_models(observations)
            self.phase = "probe"
            return
        if self.phase == "probe":
            self._lean_toward_winning_shape(observations)
            self.phase = "search"
        reinforce_step(self.distribution, observations, self.lr)
        if self.agent is not None:
            await self._agent_feedback(observations)
        else:
            self.rules.apply(self.distribution, self.history, observations)

    def _lean_toward_winning_models(self, pilot: list[Observation]) -> None:
        best: dict[str, float] = {}
        for observation in pilot:
            alias = next(n.model for n in observation.candidate.nodes if n.model)
            best[alias] = max(best.get(alias, -np.inf), observation.reward)
        if len(best) > 1:
            centre = float(np.mean(list(best.values())))
            for alias, score in best.items():
                self.distribution.model_logits[:, self.problem.aliases.index(alias)] = PRIOR_STRENGTH * (score - centre)

    def _lean_toward_winning_shape(self, observations: list[Observation]) -> None:
        probes = {p.canonical_key for p in getattr(self, "_probe_shapes", [])}
        measured = [o for o in observations if o.candidate.canonical_key in probes]
        if len(measured) < 2:
            return
        winner = max(measured, key=lambda o: o.reward)
        self.distribution.step(self.distribution.gradient(winner.candidate), 1.0)

    async def _agent_feedback(self, observations: list[Observation]) -> None:
        assert self.agent is not None
        system, user = agent_prompt(self.distribution, observations, insights=True)
        try:
            reply = await self.agent(system, user)
        except Exception as exc:  # a failing agent must not stop the search: the numeric step applied
            log.warning("agent feedback call failed: %s", exc)
            self.rejected_updates += 1
            return
        update, why = parse_agent_update(reply)
        if update is None:
            log.warning("agent feedback ignored: %s", why)
            self.rejected_updates += 1
            return
        proposed, problems = apply_agent_update(self.distribution, update)
        self.rejected_updates += bool(problems)
        if proposed is not None:
            self.proposed.append(proposed)
