"""Calibration: one simulated call is as accurate as the published single-model figures say."""

from __future__ import annotations

from pathlib import Path

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


DOC = Path(__file__).resolve().parents[2] / "docs" / "sim.md"


def _exact_rows() -> dict[tuple[str, str], float]:
    """(task, model) -> the 'exact (bank)' percentage of docs/sim.md's calibration table."""
    found: dict[tuple[str, str], float] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] not in ("math", "mmlu", "humaneval"):
            continue
        task, names, _, exact, _ = cells
        if "/" in names:  # "gemma-1b / 2b / 7b" with "41.9 / 48.0 / 59.4"
            family = names.split("-")[0]
            models = [f"{family}-{size.strip().removeprefix(family + '-')}" for size in names.split("/")]
            for model, value in zip(models, exact.split("/"), strict=True):
                found[(task, model)] = float(value)
        else:
            found[(task, names)] = float(exact)
    return found


def test_the_documented_exact_accuracies_of_every_model_are_computed(engines: dict[str, TruthEngine]) -> None:
    rows = _exact_rows()
    assert len(rows) == 21  # 3 tasks x 7 models
    for (task, model), documented in rows.items():
        simulated = 100 * engines[task].accuracy(SimGraph.build([("assistant", f"sim/{model}")], [()]))
        assert simulated == pytest.approx(documented, abs=0.051), (task, model)
