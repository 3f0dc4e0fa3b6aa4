"""Pilot and baseline shapes: self-consistency never votes over two answers."""

from __future__ import annotations

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import resolve_models
from agentscale.optimize.pilot import max_samples, self_consistency, single, why_no_vote
from agentscale.optimize.problem import SearchProblem

MODELS = resolve_models({"m": ModelSpec(model="sim/llama-8b", params_b=8.0)})


def problem(
    budget: float, roles: tuple[str, ...] = ("assistant", "vote", "tester"), max_nodes: int = 8
) -> SearchProblem:
    return SearchProblem(MODELS, roles, max_nodes, budget, 202.0, 275.0)


def test_a_vote_of_two_is_never_the_budget_s_self_consistency() -> None:
    one = problem(8.0).compute(single("m"))
    assert max_samples(problem(2.5 * one), "m") == single("m")  # two calls fit, but a 2-vote is a copy
    assert max_samples(problem(3.5 * one), "m") == self_consistency("m", 3)
    assert max_samples(problem(0.5 * one), "m") is None


def test_a_tester_chooses_between_two_samples() -> None:
    one = problem(8.0).compute(single("m"))
    tested = max_samples(problem(2.5 * one), "m", chooser="tester")
    assert tested == self_consistency("m", 2, "tester")  # it runs both programs: not a copy
    assert [n.role for n in tested.nodes] == ["assistant", "assistant", "tester"]


def test_the_reason_no_vote_baseline_fits_names_the_limit_that_refuses_it() -> None:
    """The report's baselines lacked the majority vote without a word when none fitted the space."""
    one = problem(8.0).compute(single("m"))
    assert why_no_vote(problem(8.0, roles=("assistant",)), "m") == "the space's roles have no 'vote'"
    assert why_no_vote(problem(8.0, max_nodes=3), "m") == "max_nodes 3 holds no vote of 3 samples (4 nodes)"
    assert (
        why_no_vote(problem(2.5 * one), "m")
        == f"3 samples of m cost {3 * one:.2f} compute, over the budget of {2.5 * one:g}"
    )
