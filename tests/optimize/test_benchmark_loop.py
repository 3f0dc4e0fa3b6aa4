"""The optimizer benchmark's end-to-end loop on a tiny SIMULATED space: the real runner, then the
crowned graph's exact truth (the figures themselves live in docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from agentscale.graphs.located import load_located
from agentscale.optimize.space import space_from_data
from agentscale.optimize.trials import candidate_from_json
from agentscale.sim.evaluate import SimOracle
from agentscale.sim.optimum import MAX_EXHAUSTIVE_NODES, search_optimum
from benchmarks.optimizer_efficiency import SPACES, benchmark_space, combine, space_files

TINY = """\
name: tiny
task: {name: "sim:math", train: 10, test: 16, seed: 0}
models:
  l1: {model: sim/llama-1b, params_b: 1.0}
  l3: {model: sim/llama-3b, params_b: 3.0}
roles: [assistant, fuser, vote]
max_nodes: 3
budget: {compute: 6}
optimizer: {iterations: 2, samples: 2, minibatch: 4}
"""


def test_the_loop_runs_the_product_and_scores_what_it_crowned(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    report = asyncio.run(benchmark_space(path, ["agent-reinforce", "random"], 1, [1], tmp_path))
    space = space_from_data(load_located(TINY, "tiny.yaml"), "tiny.yaml")
    optimum = search_optimum(space)
    assert report["reference"]["source"] == "exhaustive optimum"
    assert report["reference"]["accuracy"] == pytest.approx(optimum.accuracy)
    runs = report["runs"]
    assert {(r["method"], r["iterations"]) for r in runs} == {
        (m, n) for m in ("agent-reinforce", "random") for n in (1, 2)
    }
    oracle = SimOracle.for_space(space)
    for run in runs:
        assert 0 < run["crowned_accuracy"] <= optimum.accuracy + 1e-9
        assert 0 < run["spend_calls"] <= run["total_calls"]
        scored_test = run["iterations"] == 2  # the space's own setting: the whole product, test split included
        assert (run["reported_advantage"] is not None) == scored_test
        assert (run["total_calls"] > run["spend_calls"]) == scored_test
        stages = run["calls_by_stage"]  # where the calls went, the single calls' race apart from the search
        assert sum(stages.values()) == run["total_calls"] and stages["test"] == run["total_calls"] - run["spend_calls"]
        assert stages["single calls"] > 0  # (the pilot and search may replay it from the cache)
        assert ("pilot" in stages) == (run["method"] == "agent-reinforce")
    for figures in report["methods"].values():
        assert figures["runs"] == 1 and 0 < figures["median_ratio"] <= 1 + 1e-9
        assert figures["calls_to_95"] == math.inf or figures["calls_to_95"] > 0
    # the same figures when each method ran as its own process (one report each, then --combine)
    parts = []
    for method in ("agent-reinforce", "random"):
        alone = {
            **report,
            "methods": {
                method: {k: v for k, v in report["methods"][method].items() if not k.startswith("calls_ratio")}
            },
            "runs": [r for r in runs if r["method"] == method],
        }
        parts.append(tmp_path / f"{method}.json")
        parts[-1].write_text(json.dumps({"spaces": {"tiny": alone}, "seconds": 1.0}))
    combined = combine(parts)
    assert combined["seconds"] == 2.0 and combined["simulated"] is True
    assert combined["spaces"]["tiny"]["methods"] == json.loads(json.dumps(report["methods"]))
    assert len(combined["spaces"]["tiny"]["runs"]) == len(runs)
    # the truth is looked up for the graph the runner crowned, nothing else
    crowned = next(r for r in runs if r["iterations"] == 2 and r["method"] == "random")
    assert crowned["crowned_accuracy"] == pytest.approx(
        oracle.expected_accuracy(candidate_from_json(crowned["crowned_candidate"]), "test")
    )


def test_the_benchmark_spaces_have_their_references() -> None:
    """Every space too large to enumerate has its stored best-known graph beside it."""
    for path in space_files():
        space = space_from_data(load_located(path.read_text(), str(path)), str(path))
        if space.max_nodes > MAX_EXHAUSTIVE_NODES:
            assert path.with_name(path.stem + ".best-known.yaml").exists(), path


def test_a_split_per_seed_measures_each_run_against_the_optimum_of_its_own_split(tmp_path: Path) -> None:
    """Seeds that share one split share its luck; with `split_per_seed` seed S draws `task.seed: S`
    and each run's figures use the reference and best single of that split."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    report = asyncio.run(benchmark_space(path, ["random"], 2, [2], tmp_path, split_per_seed=True))
    assert report["split_per_seed"] is True
    references = {}
    for run in report["runs"]:
        own = TINY.replace("seed: 0}", f"seed: {run['seed']}}}")
        space = space_from_data(load_located(own, "tiny.yaml"), "tiny.yaml")
        assert run["reference_accuracy"] == pytest.approx(search_optimum(space).accuracy)
        oracle = SimOracle.for_space(space)
        crowned = candidate_from_json(run["crowned_candidate"])
        assert run["crowned_accuracy"] == pytest.approx(oracle.expected_accuracy(crowned, "test"))
        references[run["seed"]] = run["reference_accuracy"]
    assert references[0] != references[1]  # two draws of the test split, two optima
    ratios = sorted(r["crowned_accuracy"] / r["reference_accuracy"] for r in report["runs"])
    assert report["methods"]["random"]["worst_ratio"] == pytest.approx(ratios[0])


def test_a_space_is_named_or_given_as_a_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    builtin = SPACES / "math-b18-large.yaml"
    assert space_files(["math-b18-large", str(path)]) == [builtin, path]  # in the order given
    with pytest.raises(SystemExit, match="no such space: nope"):
        space_files(["nope"])
    with pytest.raises(SystemExit, match="named alike"):
        space_files(["math-b18-large", str(tmp_path / "math-b18-large.yaml")])
