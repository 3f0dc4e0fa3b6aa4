"""Agent-REINFORCE: REINFORCE's sample → gradient → update becomes sample → feedback → update.

- Prior (insight 1): each model alone, one call per item on the whole train split (the runner scores
  these before any search); the model distribution leans toward the better models by how far apart
  the data puts them (differences in standard errors, so 60 items lean more than 10 would).
- Pilot: the best `PILOT_MODELS` models at equal compute (as many samples plus a vote as the budget
  allows; the tester instead of the vote when the space offers it, i.e. on code), scored on
  `PILOT_PASSES` minibatches. The model prior is then set by what each model achieves with the whole
  budget (compute-aware), not by its single call: the self-consistency's gain over the model's own
  single call on the same items (paired), added to the single call's train score; a model whose
  full budget is one call is measured by that call. A slot's lean also counts how many calls of the
  model fit the budget, so a model that fills the budget in one node does not absorb the samples.
- Probes (insights 2-3): a wide graph and a deep chain of each of the `PROBE_MODELS` best models by
  that measure; the node-count and edge priors lean toward the better shape.
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
from agentscale.optimize.feedback import InsightRules, agent_prompt, apply_agent_update, log, parse_agent_update
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.methods.reinforce import reinforce_step
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import chain, largest_fitting, max_samples, single, wide
from agentscale.optimize.problem import SearchProblem

PRIOR_STRENGTH = 4.0
PRIOR_Z_STEP = 0.5  # logit per standard error between a model's single-call accuracy and the mean
PILOT_MODELS = 3  # models whose self-consistency at full budget the pilot measures
PILOT_PASSES = 2  # minibatches the pilot graphs are scored on (the second beside the probes)
PROBE_MODELS = 2  # models whose wide and deep graphs the probes measure
MIN_VARIANCE = 0.05  # least per-item variance assumed for an accuracy or a paired difference
REDRAWS = 8  # draws again while a sample is a single call (known on the whole train split)
PRIOR_SPREAD = 0.05  # least spread of the models' true full-budget rewards assumed by the shrinkage


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
        self.singles: dict[str, Observation] = {}  # alias -> its single call on the train split
        self.pilot_graphs: list[CandidateGraph] = []

    # proposals ----------------------------------------------------------------------------------
    def propose(self, k: int) -> list[CandidateGraph]:
        if self.phase == "pilot":
            return self._pilot()
        if self.phase == "probe":
            probes = {c.canonical_key: c for c in [*self._probes(), *self._pilot_again()]}  # a wide vote is a pilot
            fresh = max(0, k - len(probes))
            return [*probes.values(), *(self._sample() for _ in range(fresh))]
        extra, self.proposed = self.proposed, []
        incumbent = self._incumbent()
        if incumbent is not None and all(c.canonical_key != incumbent.canonical_key for c in extra):
            extra.insert(0, incumbent)  # seen again on new items: evidence gathers where it matters
        return extra + [self._sample() for _ in range(max(0, k - len(extra)))]

    def _sample(self) -> CandidateGraph:
        """A draw from the distribution, drawn again (up to `REDRAWS` times) while it is a single
        call: each answered the whole train split before the search, so a minibatch adds nothing."""
        known = {o.candidate.canonical_key for o in self.singles.values()}
        candidate = self.distribution.sample(self.rng)
        for _ in range(REDRAWS):
            if candidate.canonical_key not in known:
                break
            candidate = self.distribution.sample(self.rng)
        return candidate

    def nominees(self) -> list[CandidateGraph]:
        """The pilot's graphs: the best models at equal compute (insight 1), raced for the crown
        whatever their one minibatch said."""
        return list(self.pilot_graphs)

    def _incumbent(self) -> CandidateGraph | None:
        """The best graph so far by the crowning's shrunk paired estimate (not one lucky minibatch)."""
        ranked = rank(self.history, list(self.singles.values()), accuracy_weight=self.problem.accuracy_weight)
        return ranked[0] if ranked else None

    def learn_from_singles(self, singles: list[Observation]) -> None:
        self.singles = {_only_model(o.candidate): o for o in singles}
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

    def _pilot_again(self) -> list[CandidateGraph]:
        """The pilot graphs on the next minibatch (pass 2 of `PILOT_PASSES`). Nearly free: the
        crowning races the pilot graphs (its nominees) on the same train order from the first item,
        and takes these items from the response cache."""
        return list(self.pilot_graphs) if PILOT_PASSES > 1 and self.singles else []

    def budget_measures(self) -> dict[str, tuple[float, float]]:
        """Per model, (estimated train reward of the model with the whole budget, its standard
        error): its pilot self-consistency's paired gain over its own single call on the items both
        answered, added to the single call's train reward, when that beats the single call; else
        the single call (a model whose full budget is one call, or one not piloted)."""
        weight = self.problem.accuracy_weight
        measures: dict[str, tuple[float, float]] = {}
        piloted = {c.canonical_key for c in self.pilot_graphs}
        for alias, one in self.singles.items():
            best = (one.reward, _stderr(one, weight))
            pilot = [
                o for o in self.history if o.candidate.canonical_key in piloted and _only_model(o.candidate) == alias
            ]
            outcomes: dict[str, bool] = {}
            for observation in pilot:
                outcomes.update(observation.outcomes)
            shared = sorted(outcomes.keys() & one.outcomes.keys())
            if pilot and shared:
                differences = weight * np.array([float(outcomes[k]) - float(one.outcomes[k]) for k in shared])
                spread = float(differences.var(ddof=1)) if len(shared) > 1 else weight**2
                cost = (weight * pilot[-1].accuracy - pilot[-1].reward) - (weight * one.accuracy - one.reward)
                estimate = one.reward + float(differences.mean()) - cost
                stderr = float(np.sqrt(best[1] ** 2 + max(spread, MIN_VARIANCE * weight**2) / len(shared)))
                if estimate > best[0]:
                    best = (estimate, stderr)
            measures[alias] = best
        return measures

    def _calls_that_fit(self, alias: str) -> int:
        """How many calls of the model alone the budget and node limit allow (at least one)."""
        cost = self.problem.compute(single(alias))
        if self.problem.budget is None or cost <= 0:
            return self.problem.max_nodes
        return max(1, min(self.problem.max_nodes, int(self.problem.budget / cost + 1e-9)))

    def _lean_by_budget_measures(self) -> None:
        """Set the model prior from `budget_measures` (insight 1 at equal compute). Each measure is
        shrunk toward their mean by its standard error (empirical Bayes: a self-consistency seen on
        16 items moves less than a single call seen on 60), then leans 0.5 logit per standard error
        of a single call from the mean; plus the log of the calls of the model that fit the budget
        (a slot holds one call: a model used nine times in its best graph needs nine slots, one
        that fills the budget in one node takes the graph with one)."""
        measures = self.budget_measures()
        if len(measures) < 2:
            return
        estimates = np.array([m[0] for m in measures.values()])
        errors = np.array([m[1] for m in measures.values()]) ** 2
        centre = float(estimates.mean())
        spread = max(float(estimates.var()) - float(errors.mean()), PRIOR_SPREAD**2)
        scale = max(float(np.median([_stderr(o, self.problem.accuracy_weight) for o in self.singles.values()])), 1e-3)
        for alias, (estimate, stderr) in measures.items():
            shrunk = (estimate - centre) * spread / (spread + stderr**2)
            slots = np.log(self._calls_that_fit(alias))
            self.distribution.model_logits[:, self.problem.aliases.index(alias)] = PRIOR_Z_STEP * shrunk / scale + slots

    def probe_models(self) -> list[str]:
        """The `PROBE_MODELS` best models by what they achieve with the whole budget, among those
        with a wide or deep graph that fits (one that fills the budget in one call has none)."""
        measures = self.budget_measures()
        if not measures:  # no single calls: the pilot's graphs rank the models
            for observation in self.history:
                alias = _only_model(observation.candidate)
                if alias not in measures or observation.reward > measures[alias][0]:
                    measures[alias] = (observation.reward, 0.0)
        ordered = sorted(measures, key=lambda alias: -measures[alias][0]) or list(self.problem.aliases)
        return [alias for alias in ordered if self._probe_graphs(alias)][:PROBE_MODELS]

    def _probe_graphs(self, alias: str) -> list[CandidateGraph]:
        roles = self.problem.roles
        aggregator = next((r for r in ("tester", "fuser", "vote", "critic") if r in roles), "assistant")
        refiner = next((r for r in ("critic", "assistant") if r in roles), "assistant")
        probes = []
        for candidate in (
            largest_fitting(self.problem, wide, alias, aggregator),
            largest_fitting(self.problem, chain, alias, refiner),
        ):
            if candidate is not None and candidate.size > 1:
                probes.append(candidate)
        return probes

    def _probes(self) -> list[CandidateGraph]:
        probes: dict[str, CandidateGraph] = {}
        for alias in self.probe_models():
            for candidate in self._probe_graphs(alias):
                probes.setdefault(candidate.canonical_key, candidate)
        self._probe_shapes = list(probes.values())
        return self._probe_shapes

    # updates ------------------------------------------------------------------------------------
    async def observe(self, observations: list[Observation]) -> None:
        await super().observe(observations)
        if self.phase == "pilot":
            if self.singles:
                self._lean_by_budget_measures()
            else:
                self._lean_toward_winning_models(observations)
            self.phase = "probe"
            return
        if self.phase == "probe":
            if self.singles:
                self._lean_by_budget_measures()  # with the pilot's second minibatch
            self._lean_toward_winning_shape(observations)
            self.phase = "search"
        reinforce_step(self.distribution, observations, self.lr)
        if self.agent is not None:
            await self._agent_feedback(observations)
        else:
            self.rules.apply(self.distribution, self.history, observations, elite=self._incumbent())

    def _lean_toward_winning_models(self, pilot: list[Observation]) -> None:
        """Without single calls from the runner, the pilot alone sets the prior: each model's lean
        by how its graphs did against the pilot's mean."""
        best: dict[str, Observation] = {}
        for observation in pilot:
            alias = _only_model(observation.candidate)
            if alias not in best or observation.reward > best[alias].reward:
                best[alias] = observation
        if len(best) < 2:
            return
        centre = float(np.mean([o.reward for o in best.values()]))
        for alias, observation in best.items():
            column = self.problem.aliases.index(alias)
            self.distribution.model_logits[:, column] = PRIOR_STRENGTH * (observation.reward - centre)

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


def _only_model(candidate: CandidateGraph) -> str:
    return next(n.model for n in candidate.nodes if n.model)


def _stderr(observation: Observation, accuracy_weight: float) -> float:
    """Standard error of an observation's mean reward (its accuracy's, at least `MIN_VARIANCE` per item)."""
    variance = max(observation.accuracy * (1 - observation.accuracy), MIN_VARIANCE) * accuracy_weight**2
    return float(np.sqrt(variance / max(1, observation.n_items)))
