"""Agent-REINFORCE: REINFORCE's sample → gradient → update becomes sample → feedback → update.

- Prior (insight 1): each model alone, one call per item on the train split (the runner races these
  before any search: a model far behind stops early); the model distribution leans toward the better
  models by how far apart the data puts them (differences in standard errors, so 60 items lean more
  than 15 would).
- Pilot: the best `PILOT_MODELS` models at equal compute (as many samples plus a vote as the budget
  allows; the tester instead of the vote when the space offers it, i.e. on code); the winners' lean
  grows.
- Probes (insights 2-3): a wide graph and a deep chain of the best model; the node-count and edge
  priors lean toward the better shape.
- Each iteration: the incumbent (best so far by the crowning's shrunk paired estimate) again, on the
  iteration's new items, and K - 1 sampled graphs; update with the numeric REINFORCE step (always),
  then with textual feedback: an LLM agent's validated JSON update when `agent_model` is set, else the insights as
  deterministic rules. A graph the agent proposes is evaluated in the next iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.crowning import rank
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import InsightRules, ask_agent
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.methods.reinforce import reinforce_step
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import chain, largest_fitting, led, max_samples, model_of_single, single, wide
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.race import RaceOutcome

PRIOR_STRENGTH = 4.0
PRIOR_Z_STEP = 0.5  # logit per standard error between a model's single-call accuracy and the mean
PILOT_MODELS = 3  # models whose self-consistency at full budget the pilot measures


@register
class AgentReinforce(SearchMethod):
    name = "agent-reinforce"
    uses_agent = True

    @classmethod
    def agent_calls(cls, iterations: int) -> int:
        """Not after the pilot either: its round leans the model prior, and the agent speaks from the
        probes' round on."""
        return max(0, iterations - 2)

    def __init__(
        self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, lr: float = 0.5, **options: Any
    ):
        super().__init__(problem, seed=seed, agent=agent)
        self.distribution = GraphDistribution(problem)
        self.lr = lr
        self.rules = InsightRules()
        self.phase = "pilot"
        self.proposed: list[CandidateGraph] = []
        self.singles: dict[str, Observation] = {}  # alias -> its single call on the train split
        self.finalists: set[str] = set()  # the models still in the singles' race at its end
        self.pilot_graphs: list[CandidateGraph] = []

    # proposals ----------------------------------------------------------------------------------
    def propose(self, k: int) -> list[CandidateGraph]:
        if self.phase == "pilot":
            return self._pilot()
        if self.phase == "probe":
            probes = self._probes()
            return probes + [self.distribution.sample(self.rng) for _ in range(max(0, k - len(probes)))]
        extra, self.proposed = self.proposed, []
        incumbent = self._incumbent()
        if incumbent is not None and all(c.canonical_key != incumbent.canonical_key for c in extra):
            extra.insert(0, incumbent)  # seen again on new items: evidence gathers where it matters
        return extra + [self.distribution.sample(self.rng) for _ in range(max(0, k - len(extra)))]

    def nominees(self) -> list[CandidateGraph]:
        """The pilot's graphs of the models still in the singles' race: the best models at equal
        compute (insight 1), raced for the crown whatever their one minibatch said. A model whose
        single call the race dropped is clearly behind; racing its self-consistency for the crown
        costs the most calls of any pool entry and, on the measured spaces, never won."""
        if not self.singles:
            return list(self.pilot_graphs)
        return [c for c in self.pilot_graphs if c.node_models <= self.finalists]

    def _incumbent(self) -> CandidateGraph | None:
        """The best graph so far by the crowning's shrunk paired estimate (not one lucky minibatch)."""
        ranked = rank(self.history, list(self.singles.values()), accuracy_weight=self.problem.accuracy_weight)
        return ranked[0] if ranked else None

    def learn_from_singles(self, singles: RaceOutcome) -> None:
        self.singles = {model_of_single(o.candidate): o for o in singles.raced}
        self.finalists = {model_of_single(o.candidate) for o in singles.finished}
        if len(self.singles) < 2:
            return
        scores = {alias: o.reward for alias, o in self.singles.items()}
        centre = float(np.mean(list(scores.values())))
        for alias, o in self.singles.items():
            stderr = max(np.sqrt(max(o.accuracy * (1 - o.accuracy), 0.05) / max(1, o.n_items)), 1e-3)
            lean = PRIOR_Z_STEP * (scores[alias] - centre) / stderr
            self.distribution.model_logits[:, self.problem.aliases.index(alias)] = lean

    def _pilot(self) -> list[CandidateGraph]:
        """Self-consistency at full budget of the best models alone; without the runner's single
        calls (nothing learned yet), single calls and self-consistency of every model."""
        votes = partial(max_samples, self.problem, chooser=self.problem.chooser)
        if self.singles:
            aliases = sorted(self.singles, key=lambda alias: -self.singles[alias].reward)[:PILOT_MODELS]
            shapes: tuple[Callable[[str], CandidateGraph | None], ...] = (votes,)
        else:
            aliases, shapes = list(self.problem.aliases), (single, votes)
        known = {o.candidate.canonical_key for o in self.singles.values()}
        graphs: dict[str, CandidateGraph] = {}
        for alias in aliases:
            for build in shapes:
                candidate = build(alias)
                if candidate is not None and self.problem.fits(candidate) and candidate.canonical_key not in known:
                    graphs.setdefault(candidate.canonical_key, candidate)
        self.pilot_graphs = list(graphs.values())
        return self.pilot_graphs

    def _best_model(self) -> str:
        """The model whose graphs alone did best (single calls on the train split, pilot graphs),
        by item-weighted mean reward."""
        totals: dict[str, list[float]] = {}
        for observation in [*self.singles.values(), *self.history]:
            models = observation.candidate.node_models
            if len(models) == 1:
                (alias,) = models
                total = totals.setdefault(alias, [0.0, 0.0])
                total[0] += observation.reward * observation.n_items
                total[1] += observation.n_items
        return max(totals, key=lambda a: totals[a][0] / totals[a][1]) if totals else self.problem.aliases[0]

    def _probes(self) -> list[CandidateGraph]:
        alias = self._best_model()
        roles = self.problem.roles
        aggregator = next((r for r in ("tester", "fuser", "vote", "critic") if r in roles), "assistant")
        refiner = next((r for r in ("critic", "assistant") if r in roles), "assistant")
        probes = []
        # a space whose every graph has a CEO (`optional: false`) probes CEO-led shapes, led by the
        # first CEO they fit with (CEO-less probes were spent on graphs that could never be crowned)
        leaders = (None,) if None in self.problem.ceo_options else self.problem.ceo_options
        for shape, role in ((wide, aggregator), (chain, refiner)):
            for ceo in leaders:
                candidate = largest_fitting(self.problem, led(shape, ceo), alias, role)
                if candidate is not None and candidate.size > 1:
                    probes.append(candidate)
                    break
        self._probe_shapes = probes
        return probes

    # updates ------------------------------------------------------------------------------------
    async def observe(self, observations: list[Observation], *, more: bool = True) -> None:
        await super().observe(observations, more=more)
        if self.phase == "pilot":
            self._lean_toward_winning_models(observations)
            self.phase = "probe"
            return
        if self.phase == "probe":
            self._lean_toward_winning_shape(observations)
            self.phase = "search"
        reinforce_step(self.distribution, observations, self.lr)
        if self.agent is not None and more:
            proposed = await ask_agent(
                self.agent, self.distribution, observations, insights=True, unused=self.agent_unused
            )
            if proposed is not None:
                self.proposed.append(proposed)  # measured in the next iteration
        elif self.agent is None:
            self.rules.apply(self.distribution, self.history, observations, elite=self._incumbent())

    def _lean_toward_winning_models(self, pilot: list[Observation]) -> None:
        """Each pilot model's lean grows (or shrinks) by how its equal-compute graph did against the
        pilot's mean, in standard errors of a minibatch score. Without single calls from the
        runner, the pilot alone sets the prior."""
        best: dict[str, Observation] = {}
        for observation in pilot:
            alias = model_of_single(observation.candidate)
            if alias not in best or observation.reward > best[alias].reward:
                best[alias] = observation
        if len(best) < 2:
            return
        centre = float(np.mean([o.reward for o in best.values()]))
        for alias, observation in best.items():
            column = self.problem.aliases.index(alias)
            if self.singles:
                stderr = max(np.sqrt(0.25 / max(1, observation.n_items)), 1e-3)
                self.distribution.model_logits[:, column] += PRIOR_Z_STEP * (observation.reward - centre) / stderr
            else:
                self.distribution.model_logits[:, column] = PRIOR_STRENGTH * (observation.reward - centre)

    def _lean_toward_winning_shape(self, observations: list[Observation]) -> None:
        probes = {p.canonical_key for p in getattr(self, "_probe_shapes", [])}
        measured = [o for o in observations if o.candidate.canonical_key in probes]
        if len(measured) < 2:
            return
        winner = max(measured, key=lambda o: o.reward)
        self.distribution.step(self.distribution.gradient(winner.candidate), 1.0)
