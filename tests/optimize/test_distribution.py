"""The probabilistic graph: every sample is valid and within budget; updates move the right way."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.distribution import GraphDistribution, remove_node, repair
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
@example(seed=1316, budget=1.5, max_nodes=4)  # every draw missed the budget: the cheapest single call is the answer
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


def test_the_edge_gradient_points_toward_the_graphs_edges_and_away_from_the_rest() -> None:
    """Turned around, every REINFORCE step (and the elite and probe leans) learned edges backwards
    while the size test above still passed."""
    distribution = GraphDistribution(problem(None, max_nodes=3, roles=("assistant", "vote")))
    voted = CandidateGraph(
        (NodeChoice("assistant", "big"), NodeChoice("assistant", "big"), NodeChoice("vote", None)),
        frozenset({(0, 2), (1, 2)}),
    )
    edge = distribution.gradient(voted).edge
    assert edge[0, 2] > 0 and edge[1, 2] > 0 and edge[0, 1] < 0


def test_one_reinforce_step_is_the_learning_rate_times_the_mean_advantage() -> None:
    """Two graphs, rewards 1 and 0 (advantages +1 and -1), lr 0.5: the size logit of the rewarded
    one-node graph moves by lr/K * (1 - p) - lr/K * (0 - p') ≈ 0.26 (p' after the first step). Not
    divided by K, the step grew with `samples` (0.53 here)."""
    distribution = GraphDistribution(problem(None, max_nodes=3, roles=("assistant", "vote")))
    one = CandidateGraph((NodeChoice("assistant", "big"),), frozenset())
    voted = CandidateGraph(
        (NodeChoice("assistant", "big"), NodeChoice("assistant", "big"), NodeChoice("vote", None)),
        frozenset({(0, 2), (1, 2)}),
    )
    reinforce_step(distribution, [Observation(c, r, 0.0, 0.0, 1, reward=r) for c, r in ((one, 1.0), (voted, 0.0))], 0.5)
    assert 0.2 < distribution.size_logits[0] < 0.3 and -0.3 < distribution.size_logits[2] < -0.2


def test_budget_repair_drops_the_cheapest_nodes_first() -> None:
    space = problem(71.5, max_nodes=5, roles=("assistant", "vote"))  # big alone: 69.2; each tiny: 1.0
    distribution = GraphDistribution(space)
    tiny, big = NodeChoice("assistant", "tiny"), NodeChoice("assistant", "big")
    over = CandidateGraph((tiny, big, tiny, tiny, NodeChoice("vote", None)), frozenset((i, 4) for i in range(4)))
    fitted = distribution.fit_budget(over)
    assert fitted is not None and space.fits(fitted)
    assert [n.model for n in fitted.nodes if n.model] == ["tiny", "big", "tiny"]  # one tiny dropped, no more


VOTE, TINY, CRITIC = NodeChoice("vote", None), NodeChoice("assistant", "tiny"), NodeChoice("critic", "mid")


def test_budget_repair_keeps_the_vote_and_drops_a_model_node() -> None:
    """Removing the vote saves nothing: the critic would then read all five answers (36.7 compute
    instead of 17.6) and the repair would go on dropping answers past what the budget needs."""
    voted = CandidateGraph((TINY,) * 5 + (VOTE, CRITIC), frozenset({(i, 5) for i in range(5)} | {(5, 6)}))
    space = problem(17.0, max_nodes=8)
    assert space.compute(voted) > 17.0
    fitted = GraphDistribution(space).fit_budget(voted)
    assert fitted == CandidateGraph((TINY,) * 4 + (VOTE, CRITIC), frozenset({(i, 4) for i in range(4)} | {(4, 5)}))


def copying_votes(candidate: CandidateGraph) -> list[int]:
    """Votes over one input or two: each passes an input on."""
    return [i for i, n in enumerate(candidate.nodes) if n.role == "vote" and len(candidate.predecessors[i]) <= 2]


def test_repair_drops_a_vote_over_one_input_and_rewires_around_it() -> None:
    """The simulator's free trick: one answer copied through two one-input votes into a critic."""
    trick = repair((TINY, VOTE, VOTE, CRITIC), {(0, 1), (0, 2), (1, 3), (2, 3)})
    assert trick == CandidateGraph((TINY, CRITIC), frozenset({(0, 1)}))
    three = {(0, 3), (1, 3), (2, 3)}
    output_copy = repair((TINY, TINY, TINY, VOTE, VOTE), three | {(3, 4)})  # the output votes over one vote
    assert output_copy == CandidateGraph((TINY, TINY, TINY, VOTE), frozenset(three))
    kept = repair((TINY, TINY, TINY, VOTE), three)
    assert kept.nodes[-1] == VOTE and kept.predecessors[3] == (0, 1, 2)


def test_repair_drops_a_vote_over_two_inputs() -> None:
    """Two answers agree or tie, and a tie goes to the first finished: the vote passes one answer on
    at the price of both (mmlu-b42-large seed 6 raced four such graphs for the crown, each gemma-7b's
    single call item for item). The vote goes; its inputs feed what it fed, or the new output."""
    assert repair((TINY, TINY, VOTE), {(0, 2), (1, 2)}) == CandidateGraph((TINY, TINY), frozenset({(0, 1)}))
    answer, critic = NodeChoice("assistant", "mid"), NodeChoice("critic", "mid")
    critiqued = repair((answer, critic, VOTE), {(0, 1), (0, 2), (1, 2)})
    assert critiqued == CandidateGraph((answer, critic), frozenset({(0, 1)}))
    tester = NodeChoice("tester", None)  # a tester of two runs both on the examples: a choice, kept
    assert repair((TINY, TINY, tester), {(0, 2), (1, 2)}).nodes[-1] == tester


def test_removing_a_node_never_leaves_a_one_input_vote() -> None:
    graph = CandidateGraph((TINY, TINY, VOTE, CRITIC), frozenset({(0, 2), (1, 2), (2, 3)}))
    shrunk = remove_node(graph, 1)  # the vote would be left with input 0 alone
    assert not copying_votes(shrunk) and shrunk.is_valid
    assert shrunk == CandidateGraph((TINY, CRITIC), frozenset({(0, 1)}))


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), max_nodes=st.integers(2, 9), budget=st.sampled_from([3.0, 12.0, 40.0]))
def test_repair_never_leaves_a_vote_over_one_or_two_inputs(seed: int, max_nodes: int, budget: float) -> None:
    """Raw draws from a distribution that favours votes and sparse edges, then fitted to a budget
    (which removes nodes and repairs again)."""
    distribution = GraphDistribution(problem(budget, max_nodes))
    distribution.role_logits[:, distribution.problem.roles.index("vote")] = 2.0
    distribution.edge_logits[:] = -1.5
    rng = np.random.default_rng(seed)
    for _ in range(25):
        candidate = distribution._draw(rng)
        assert not copying_votes(candidate), candidate.describe()
        fitted = distribution.fit_budget(candidate)
        assert fitted is None or not copying_votes(fitted), fitted.describe()
