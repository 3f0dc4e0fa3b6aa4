"""The probabilistic graph: every sample is valid and within budget; updates move the right way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.methods.reinforce import reinforce_step
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem

MODELS = {
    "tiny": ModelSpec(model="sim/llama-1b", params_b=1.0),
    "mid": ModelSpec(model="sim/llama-8b", params_b=8.0),
    "big": ModelSpec(model="sim/llama-70b", params_b=70.0),
}


def problem(
    budget: float | None,
    max_nodes: int = 6,
    roles: tuple[str, ...] = ("assistant", "critic", "fuser", "verifier", "vote"),
) -> SearchProblem:
    return SearchProblem(resolve_models(MODELS), roles, max_nodes, budget, 202.0, 275.0)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), budget=st.sampled_from([1.5, 4.0, 12.0, 40.0, 200.0]), max_nodes=st.integers(1, 7))
def test_samples_are_valid_and_within_budget(seed: int, budget: float, max_nodes: int) -> None:
    space = problem(budget, max_nodes)
    distribution = GraphDistribution(space)
    distribution.edge_logits[:] = np.random.default_rng(seed).normal(0, 2, distribution.edge_logits.shape)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        candidate = distribution.sample(rng)
        assert candidate.is_valid, candidate.problems()
        assert candidate.size <= max_nodes
        assert space.compute(candidate) <= budget + 1e-9
        assert candidate.nodes[0].role == "assistant"


def test_impossible_budget_is_a_clear_error() -> None:
    distribution = GraphDistribution(problem(0.1))
    with pytest.raises(ValueError, match="cheapest single call costs"):
        distribution.sample(np.random.default_rng(0))


def test_reinforce_moves_toward_the_rewarded_model() -> None:
    """Toy problem with a known answer: graphs using `big` are rewarded, others are not."""
    space = problem(None, max_nodes=2, roles=("assistant",))
    distribution = GraphDistribution(space)
    rng = np.random.default_rng(0)
    big = space.aliases.index("big")
    before = distribution.model_probs(0)[big]
    for _ in range(30):
        batch = [distribution.sample(rng) for _ in range(6)]
        observations = [
            Observation(c, 0.0, 0.0, 0.0, 1, reward=float(all(n.model == "big" for n in c.nodes))) for c in batch
        ]
        reinforce_step(distribution, observations, lr=0.5)
    assert distribution.model_probs(0)[big] > max(0.8, before + 0.4)


def test_reinforce_moves_edges_and_size() -> None:
    space = problem(None, max_nodes=3, roles=("assistant", "vote"))
    distribution = GraphDistribution(space)
    rng = np.random.default_rng(1)
    for _ in range(40):
        batch = [distribution.sample(rng) for _ in range(6)]
        observations = [Observation(c, 0.0, 0.0, 0.0, 1, reward=float(c.size == 3)) for c in batch]
        reinforce_step(distribution, observations, lr=0.5)
    assert distribution.size_probs()[2] > 0.8


def test_budget_repair_drops_the_cheapest_nodes_first() -> None:
    space = problem(70.5, max_nodes=4, roles=("assistant", "vote"))  # big alone: 69.2; each tiny: 1.0
    distribution = GraphDistribution(space)
    over = CandidateGraph(
        (
            NodeChoice("assistant", "tiny"),
            NodeChoice("assistant", "big"),
            NodeChoice("assistant", "tiny"),
            NodeChoice("vote", None),
        ),
        frozenset({(0, 3), (1, 3), (2, 3)}),
    )
    fitted = distribution._fit_budget(over)
    assert fitted is not None and space.fits(fitted)
    assert [n.model for n in fitted.nodes if n.model] == ["tiny", "big"]  # one tiny dropped, no more
