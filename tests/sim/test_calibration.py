"""Calibration: one simulated call is as accurate as the published single-model figures say."""

from __future__ import annotations

import pytest

from agentscale.agents.roles import builtin_roles
from agentscale.sim.population import MODELS, PUBLISHED_ACCURACY, single_call_accuracy
from agentscale.sim.provider import respond
from agentscale.sim.tasks import load_sim_task
from agentscale.sim.truth import SimGraph, TruthEngine

TASKS = ("math", "mmlu", "humaneval")


@pytest.mark.parametrize("task", TASKS)
def test_exact_single_call_accuracy_on_the_bank_matches_the_paper(task: str, engines: dict[str, TruthEngine]) -> None:
    for name, target in PUBLISHED_ACCURACY[task].items():
        simulated = engines[task].accuracy(SimGraph.build([("assistant", f"sim/{name}")], [()]))
        assert simulated == pytest.approx(target, abs=0.01), (task, name)


def test_gemma_accuracies_follow_the_size_curve_plus_the_family_offset(engines: dict[str, TruthEngine]) -> None:
    for task in TASKS:
        for name, model in MODELS.items():
            simulated = engines[task].accuracy(SimGraph.build([("assistant", model.route)], [()]))
            assert simulated == pytest.approx(single_call_accuracy(name, task), abs=0.01), (task, name)
    # The offsets make the family matter, in opposite directions on MATH and HumanEval.
    assert single_call_accuracy("gemma-1b", "math") > single_call_accuracy("llama-1b", "math") + 0.05
    assert single_call_accuracy("gemma-1b", "humaneval") < single_call_accuracy("llama-1b", "humaneval") - 0.05


@pytest.mark.parametrize("task", TASKS)
def test_sampled_single_calls_hit_the_targets_within_two_points(task: str) -> None:
    """The provider's sampled answers (the path real runs take) over 4000 items."""
    items = load_sim_task(task, size=4000).items
    role = builtin_roles()["assistant"]
    messages = [role.messages(item.question, [], "number") for item in items]
    for name, target in PUBLISHED_ACCURACY[task].items():
        right = sum(
            str(respond(name, m, {"temperature": 0.7, "seed": 0}).answer) == item.reference
            for m, item in zip(messages, items, strict=True)
        )
        assert abs(right / len(items) - target) <= 0.02, (task, name, right / len(items))
