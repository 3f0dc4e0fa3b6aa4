"""The generative model of one call: copies of an answer are not more evidence than the answer once.

A long search on the exact truth once found, as its best graph, one answer routed through two
one-input votes into a critic: free nodes whose copies bought the critic recognition and diluted its
lure. These tests keep that trick closed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from agentscale.sim import behavior
from agentscale.sim.behavior import ROLES, call_distribution
from agentscale.sim.items import bank
from agentscale.sim.population import sim_model
from agentscale.sim.profiles import profile
from agentscale.sim.truth import SimGraph, TruthEngine

L1, L8, G7 = "sim/llama-1b", "sim/llama-8b", "sim/gemma-7b"


def test_without_a_majority_pull_one_answer_shown_twice_reads_like_it_shown_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recognition (contrast) and the lure count different answers; only the majority pull and the
    prompt length count the copies. With both switched off, [a, a] and [a, a, a] must read like [a]."""
    monkeypatch.setitem(ROLES, "probe", dataclasses.replace(ROLES["critic"], name="probe", conformity=0.0))
    monkeypatch.setattr(behavior, "CONTEXT_PENALTY", 0.0)
    monkeypatch.setattr(behavior, "CONFUSION", 0.0)
    items = bank("math", 0, size=60)
    model = sim_model(L1)
    m = profile("math").n_categories
    for answer in range(m):
        once = call_distribution(items, model, "probe", np.eye(m, dtype=np.int64)[answer][None])
        for copies in (2, 3):
            shown = call_distribution(items, model, "probe", copies * np.eye(m, dtype=np.int64)[answer][None])
            np.testing.assert_allclose(shown, once, atol=1e-12)


@pytest.mark.parametrize("task", ["math", "mmlu", "humaneval"])
def test_copying_an_answer_through_votes_buys_nothing(task: str, engines: dict[str, TruthEngine]) -> None:
    engine = engines[task]
    for model in (L8, G7):
        for role in ("critic", "fuser", "verifier"):
            chain = engine.accuracy(SimGraph.build([("assistant", model), (role, model)], [(), (0,)]))
            for copies in (2, 3):
                nodes = [("assistant", model), *[("vote", None)] * copies, (role, model)]
                preds = [(), *[(0,)] * copies, tuple(range(1, copies + 1))]
                copied = engine.accuracy(SimGraph.build(nodes, preds))
                assert copied <= chain + 1e-9, (task, model, role, copies, copied, chain)
