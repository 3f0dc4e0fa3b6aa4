"""The `bayes` method (Optuna's TPE): each trial is told its own graph's reward, as a reward to maximise."""

from __future__ import annotations

import asyncio

import optuna

from agentscale.optimize.methods.bayes import BayesSearch
from tests.optimize.test_agent_reinforce import PROBLEM, _observed


def test_each_trial_is_told_its_own_graphs_reward_when_one_evaluation_is_missing() -> None:
    """The spend cap refused the middle proposal: the rewards were told by position, so the third
    graph's reward went to the second graph's trial (and TPE learned from graphs it never saw)."""
    method = BayesSearch(PROBLEM, seed=0)
    first, refused, third = method.propose(3)
    assert len({first.canonical_key, refused.canonical_key, third.canonical_key}) == 3
    number = {candidate.canonical_key: trial.number for trial, candidate in method.pending}
    asyncio.run(method.observe([_observed(first, 0.2), _observed(third, 0.9)]))
    told = {t.number: t.value for t in method.study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert told[number[first.canonical_key]] == 0.2 and told[number[third.canonical_key]] == 0.9
    assert number[refused.canonical_key] not in told and method.study.best_value == 0.9  # maximised
