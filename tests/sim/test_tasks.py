"""Sim tasks as ordinary tasks, the sim seed, and the oracle's minibatch observations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import agentscale.sim.tasks  # noqa: F401  (registers the sim: prefix)
from agentscale.agents.roles import builtin_roles
from agentscale.cli.app import main
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.space import SpaceSpec
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.items import bank, item_for_text, make_item, parse_tag
from agentscale.sim.profiles import profile
from agentscale.sim.provider import respond
from agentscale.sim.seeding import sim_seed
from agentscale.sim.tasks import load_sim_task
from agentscale.tasks import TaskError, list_tasks, load_task


def test_sim_tasks_load_through_the_registry() -> None:
    task = load_task("sim:mmlu", size=50)
    assert task.name == "sim:mmlu" and task.size == 50 and task.answer_format == "number"
    item = task.items[3]
    assert item.question.startswith("[sim:mmlu#0003]") and item.reference in {"1", "2", "3", "4"}
    assert task.score(item.reference, item).correct and not task.score("0", item).correct
    assert {"sim:math", "sim:mmlu", "sim:humaneval"} <= {row.name for row in list_tasks()}
    assert all("simulated" in row.description for row in list_tasks() if row.name.startswith("sim:"))
    with pytest.raises(TaskError, match="unknown sim task"):
        load_task("sim:gsm8k")


def test_items_do_not_depend_on_the_bank_size_and_the_sim_seed_changes_them(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    small, large = load_sim_task("math", size=10), load_sim_task("math", size=40)
    assert small.items == large.items[:10]
    monkeypatch.setenv("AGENTSCALE_SIM_SEED", "7")
    seeded = load_sim_task("math", size=10)
    assert seeded.items[0].question.startswith("[sim:math#0000@s7]")
    assert parse_tag(seeded.items[0].question) == ("math", 7, 0)
    assert [i.reference for i in seeded.items] != [i.reference for i in small.items]


SPACE = SpaceSpec.model_validate(
    {
        "name": "observe",
        "task": {"name": "sim:math", "train": 400, "test": 100, "seed": 3},
        "models": {"s": {"model": "sim/llama-3b"}},
        "budget": {"compute": 15},
    }
)


def test_observations_are_deterministic_and_unbiased() -> None:
    oracle = SimOracle.for_space(SPACE)
    graph = CandidateGraph(
        (NodeChoice("assistant", "s"), NodeChoice("assistant", "s"), NodeChoice("fuser", "s")),
        frozenset({(0, 2), (1, 2)}),
    )
    first = oracle.observe(graph, 8, seed=1)
    assert first == oracle.observe(graph, 8, seed=1) and len(first.correct) == 8
    assert set(first.item_ids) <= {item.id for item in oracle.tasks["train"].items}
    full = oracle.observe(graph, None, seed=2)
    assert abs(full.accuracy - oracle.expected_accuracy(graph, "train")) < 0.08
    assert oracle.compute(graph) == pytest.approx(graph.compute(resolve_models(SPACE.models), 202, 275))
    assert oracle.within_budget(graph) and oracle.latency(graph) > 0
    seen = oracle.evaluate(graph, 8, seed=1)
    assert (seen.accuracy, seen.n_items, seen.compute) == (first.accuracy, 8, oracle.compute(graph))
    # the latency of the split it ran on (the train items' lengths, not the test items')
    assert seen.latency_s == oracle.latency(graph, "train") != oracle.latency(graph, "test")


def test_another_seed_draws_the_same_items_outcomes_anew() -> None:
    """A seed re-samples the outcomes, not only which items: keyed by graph and item alone, two runs
    of one graph on the same items agreed item for item, and repeated minibatches told nothing new."""
    oracle = SimOracle.for_space(SPACE)
    graph = CandidateGraph((NodeChoice("assistant", "s"),), frozenset())
    first = oracle.observe(graph, None, seed=2)
    again = oracle.observe(graph, seed=3, item_ids=first.item_ids)
    assert again.item_ids == first.item_ids
    assert sum(a != b for a, b in zip(first.correct, again.correct, strict=True)) > 40  # of 400 items


def test_oracle_splits_are_the_optimizer_runners_splits() -> None:
    """The ground truth must score the very items an optimization run evaluates on."""
    from agentscale.optimize.runner import load_task_split

    _, train, test = load_task_split(SPACE)
    oracle = SimOracle.for_space(SPACE)
    assert [i.id for i in train] == [i.id for i in oracle.tasks["train"].items]
    assert [i.id for i in test] == [i.id for i in oracle.tasks["test"].items]


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_sim_seed_is_the_default_seed(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """`AGENTSCALE_SIM_SEED=` (set but empty, as a shell script or .env file leaves it) picks the item
    banks an unset variable picks, seed 0."""
    monkeypatch.setenv("AGENTSCALE_SIM_SEED", value)
    assert sim_seed() == 0


def test_a_sim_seed_that_is_no_integer_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was a plain ValueError: the CLI printed a traceback around the message."""
    monkeypatch.setenv("AGENTSCALE_SIM_SEED", "abc")
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "runs.db"))
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-1b}\n")
    assert main(["eval", str(graph), "--task", "sim:math", "--n", "1"]) == 1
    err = capsys.readouterr().err
    assert "AGENTSCALE_SIM_SEED must be an integer, got 'abc'" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", ["x", "1.5"])
def test_a_seed_option_that_is_no_integer_is_refused(
    seed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--task-option seed=x` (or `task.options: {seed: x}`) tagged every item `@sx`, which the sim
    models do not read: every answer wrong, 0% where seed 7 gives 72%, and exit 0."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "runs.db"))
    graph = tmp_path / "g.yaml"
    graph.write_text("name: g\nnodes:\n  - {id: a, role: assistant, model: sim/llama-70b}\n")
    assert main(["eval", str(graph), "--task", "sim:math", "--task-option", f"seed={seed}", "--n", "3"]) == 1
    err = capsys.readouterr().err
    assert "task 'sim:math': seed must be an integer" in err and "Traceback" not in err


def test_a_sim_seed_draws_new_difficulties_with_the_same_distribution() -> None:
    for task in ("math", "mmlu", "humaneval"):
        zero, seven = bank(task, 0, 300).difficulty, bank(task, 7, 300).difficulty
        assert np.mean(np.abs(zero - seven)) > 0.3 * profile(task).difficulty_sd, task
        for values in (zero, seven):  # every prefix has the population's distribution (low discrepancy)
            assert abs(values.mean()) < 0.05 and abs(values.std() / profile(task).difficulty_sd - 1) < 0.05


def test_families_err_differently_and_harder_items_write_longer_answers() -> None:
    items = bank("math", 0, 1000)
    llama, gemma = items.family_weights["llama"], items.family_weights["gemma"]
    assert np.mean(np.abs(llama - gemma).sum(axis=1)) > 0.2  # each family tilts the plausibilities its own way
    assert np.corrcoef(items.difficulty, np.log(items.completion_tokens))[0, 1] > 0.3


def test_mmlu_answers_are_the_four_options_evenly() -> None:
    counts = np.bincount([make_item("mmlu", 0, i).answer for i in range(800)], minlength=5)[1:]
    assert counts.min() > 150  # 200 expected per option


def test_a_negative_sim_seed_is_carried_by_the_tag() -> None:
    task = load_sim_task("math", size=5, seed=-3)
    question = task.items[4].question
    assert "@s-3]" in question and parse_tag(question) == ("math", -3, 4)
    assert item_for_text(question) == make_item("math", -3, 4)
    messages = builtin_roles()["assistant"].messages(question, [], "number")
    replies = {str(respond("llama-70b", messages, {"temperature": 0.7, "seed": s}).answer) for s in range(12)}
    assert task.items[4].reference in replies  # answers the seed -3 item, not an untagged one
