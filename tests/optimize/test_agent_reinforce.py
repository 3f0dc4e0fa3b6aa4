"""Agent-REINFORCE's compute-aware model prior: what a model achieves with the whole budget, not
its single call, decides the lean; the pilot is scored on two minibatches; the probes measure the
best two models by that measure. Observations are built by hand (the method only reads them); the
end-to-end run uses the SIMULATED population."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from agentscale.graphs.located import load_located
from agentscale.graphs.spec import ModelSpec
from agentscale.models.gateway import Gateway
from agentscale.optimize.candidate import CandidateGraph, resolve_models
from agentscale.optimize.methods.agent_reinforce import PILOT_PASSES, AgentReinforce
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import max_samples, single
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.runner import Optimization
from agentscale.optimize.space import space_from_data
from agentscale.optimize.trials import candidate_from_json
from agentscale.storage.db import Store

TRAIN = [f"i{k}" for k in range(60)]


def problem(models: dict[str, str], budget: float = 80.0, max_nodes: int = 10) -> SearchProblem:
    specs = {
        alias: ModelSpec(model=route, params_b=float(route.rsplit("-", 1)[1][:-1])) for alias, route in models.items()
    }
    return SearchProblem(
        resolve_models(specs), ("assistant", "critic", "fuser", "vote"), max_nodes, budget, 202.0, 275.0
    )


def observed(space: SearchProblem, candidate: CandidateGraph, right: list[bool], items: list[str]) -> Observation:
    accuracy = sum(right) / len(right)
    outcomes = dict(zip(items, right, strict=True))
    return Observation(candidate, accuracy, space.compute(candidate), 1.0, len(items), accuracy, 0.0, outcomes)


def right_on_last(count: int, n: int) -> list[bool]:
    return [k >= n - count for k in range(n)]


def method_after_pilot(space: SearchProblem, singles: dict[str, int], gains: dict[str, int]) -> AgentReinforce:
    """Singles right on the last `singles[alias]` of 60 train items; each piloted model's
    self-consistency right where its single call is, and on `gains[alias]` more of the pilot's 8."""
    method = AgentReinforce(space, seed=0)
    method.learn_from_singles([observed(space, single(a), right_on_last(c, 60), TRAIN) for a, c in singles.items()])
    pilot = method.propose(4)
    assert method.phase == "pilot" and pilot
    items = TRAIN[:8]
    observations = []
    for candidate in pilot:
        alias = next(n.model for n in candidate.nodes if n.model)
        base = method.singles[alias].outcomes
        right = [base[item] or k < gains.get(alias, 0) for k, item in enumerate(items)]
        observations.append(observed(space, candidate, right, items))
    asyncio.run(method.observe(observations))
    return method


def test_full_budget_self_consistency_outweighs_a_better_single_call() -> None:
    """Two models of one cost: the one whose single call is worse but whose self-consistency gains
    more over it leads the prior, and is probed first."""
    space = problem({"a": "sim/llama-8b", "b": "sim/gemma-7b", "c": "sim/llama-1b"})
    # b's single call is 6 items worse; its vote gains 2 of 8 pilot items over it, a's gains none
    method = method_after_pilot(space, {"a": 40, "b": 34, "c": 15}, {"b": 2})
    measures = method.budget_measures()
    assert measures["b"][0] > measures["a"][0] > measures["c"][0]
    probs = method.distribution.model_probs(0)
    a, b = space.aliases.index("a"), space.aliases.index("b")
    assert probs[b] > probs[a]
    assert method.probe_models() == ["b", "a"]
    # without the pilot's gain the better single call leads
    flat = method_after_pilot(space, {"a": 40, "b": 34, "c": 15}, {})
    assert flat.distribution.model_probs(0)[a] > flat.distribution.model_probs(0)[b]


def test_a_model_that_fills_the_budget_in_one_call_does_not_absorb_the_samples() -> None:
    """70B fills the budget with one node; 8B scores a little less with the whole budget. Per slot,
    8B gets more mass, and most sampled graphs are not the 70B call plus leftovers."""
    space = problem({"big": "sim/llama-70b", "mid": "sim/llama-8b", "tiny": "sim/llama-1b"})
    method = method_after_pilot(space, {"big": 44, "mid": 34, "tiny": 15}, {"mid": 1})
    measures = method.budget_measures()
    assert measures["big"][0] > measures["mid"][0]  # 44/60 against 34/60 + 1/8
    probs = method.distribution.model_probs(0)
    assert probs[space.aliases.index("mid")] > probs[space.aliases.index("big")]
    rng = np.random.default_rng(0)
    samples = [method.distribution.sample(rng) for _ in range(200)]
    with_big = sum(any(n.model == "big" for n in c.nodes) for c in samples)
    assert with_big < 100
    # the 70B has no wide or deep graph within the budget: the probes go to the next models
    assert method.probe_models() == ["mid", "tiny"]


def test_the_pilot_is_scored_again_beside_the_probes() -> None:
    space = problem({"big": "sim/llama-70b", "mid": "sim/llama-8b", "tiny": "sim/llama-1b"})
    method = method_after_pilot(space, {"big": 44, "mid": 34, "tiny": 15}, {"mid": 1})
    second = method.propose(4)
    keys = [c.canonical_key for c in second]
    for candidate in method.pilot_graphs:
        assert candidate.canonical_key in keys
    assert max_samples(space, "big") == single("big")  # its full budget is its single call: not piloted
    assert {next(n.model for n in c.nodes if n.model) for c in method.pilot_graphs} == {"mid", "tiny"}


SPACE = """\
name: pilot-items
task: {name: "sim:mmlu", train: 24, test: 8, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  g2: {model: sim/gemma-2b, params_b: 2.0}
roles: [assistant, critic, vote]
max_nodes: 4
budget: {compute: 8}
optimizer: {iterations: 3, samples: 2, minibatch: 4}
"""


def test_the_pilot_graphs_answer_two_minibatches_and_the_crowning_reuses_them(tmp_path: Path) -> None:
    """End to end on the SIMULATED population: each pilot graph is scored in iterations 0 and 1 on
    disjoint minibatches (8 items in all); when the crowning races it, those items cost no call."""
    space = space_from_data(load_located(SPACE, "space.yaml"), "space.yaml")
    store = Store(tmp_path / "run.db")
    result = asyncio.run(Optimization(space, Gateway(store), space_text=SPACE, score_test=False).run())
    trials = store.trials(result.run_id)
    items: dict[int, set[str]] = {}
    for row in store.run_items(result.run_id):
        prefix, _, item_id = row.item_key.partition(":")
        if prefix.startswith("t") and prefix[1:].isdigit():
            items.setdefault(int(prefix[1:]), set()).add(item_id)
    pilot = [t for t in trials if t.iteration == 0 and t.kind == "search"]
    assert pilot and PILOT_PASSES == 2
    for first in pilot:
        again = [t for t in trials if t.iteration == 1 and t.key == first.key]
        assert len(again) == 1
        assert len(items[first.seq]) == len(items[again[0].seq]) == 4
        assert not items[first.seq] & items[again[0].seq]
        crowned = [t for t in trials if t.kind == "crown" and t.key == first.key]
        assert crowned, "the pilot graphs are the method's nominees: they race for the crown"
        seen = items[first.seq] | items[again[0].seq]
        raced = set().union(*(items[t.seq] for t in crowned))
        assert seen <= raced  # the race walks the same train order from its first item
    assert all(candidate_from_json(t.candidate_json).size > 1 for t in pilot)
