"""Bayesian optimisation (Optuna's TPE) over the same encoding: node count, per-slot role and model,
one binary choice per forward edge and the coordinator choice; each suggestion is repaired and fitted
to the budget exactly like a sampled graph."""

from __future__ import annotations

from typing import Any

from agentscale.errors import AgentScaleError
from agentscale.graphs.spec import MODEL_FREE_ROLES
from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.distribution import GraphDistribution, repair
from agentscale.optimize.methods.base import AgentCall, SearchMethod, register
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem


@register
class BayesSearch(SearchMethod):
    name = "bayes"

    def __init__(self, problem: SearchProblem, *, seed: int = 0, agent: AgentCall | None = None, **options: Any):
        super().__init__(problem, seed=seed, agent=agent)
        try:
            import optuna
        except ImportError:
            raise AgentScaleError("method 'bayes' needs optuna: pip install 'agentscale[bayes]'") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=8, multivariate=True)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.fitter = GraphDistribution(problem)  # only for its budget repair
        self.pending: list[tuple[Any, CandidateGraph]] = []

    def propose(self, k: int) -> list[CandidateGraph]:
        proposals = []
        for _ in range(k):
            trial, candidate = self._suggest()
            self.pending.append((trial, candidate))
            proposals.append(candidate)
        return proposals

    def _suggest(self) -> tuple[Any, CandidateGraph]:
        problem = self.problem
        for _ in range(64):
            trial = self.study.ask()
            size = trial.suggest_int("size", 1, problem.max_nodes)
            nodes = []
            for slot in range(problem.max_nodes):  # fixed dimensions help TPE; unused slots are ignored
                role = trial.suggest_categorical(f"role{slot}", list(problem.roles))
                model = trial.suggest_categorical(f"model{slot}", list(problem.aliases))
                if slot < size:
                    nodes.append(NodeChoice(role, None if role in MODEL_FREE_ROLES else model))
            edges = {
                (i, j)
                for j in range(problem.max_nodes)
                for i in range(j)
                if trial.suggest_categorical(f"edge{i}_{j}", [0, 1]) and j < size
            }
            options = len(problem.ceo_options)  # asked only when searched: keeps other spaces' trials as before
            choice = trial.suggest_categorical("ceo", list(range(options))) if options > 1 else 0
            candidate = self.fitter.fit_budget(repair(tuple(nodes), edges, problem.ceo_options[choice]))
            if candidate is not None and problem.fits(candidate):
                return trial, candidate
            self.study.tell(trial, -1.0)  # invalid or over budget: teach TPE to avoid it
        raise AgentScaleError("Bayesian search found no graph within the budget")

    async def observe(self, observations: list[Observation], *, more: bool = True) -> None:
        """Each trial told its own graph's reward: matched by graph, not by position (a proposal the
        spend cap refused is missing from `observations`, and the rewards after it went to the
        wrong trials); a trial left untold stays open in the study."""
        await super().observe(observations, more=more)
        waiting: dict[str, list[Any]] = {}
        for trial, candidate in self.pending:
            waiting.setdefault(candidate.canonical_key, []).append(trial)
        for observation in observations:
            trials = waiting.get(observation.candidate.canonical_key)
            if trials:
                self.study.tell(trials.pop(0), observation.reward)
        self.pending = []
