"""The exhaustive optimum of a small space against a brute force written independently here."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

from agentscale import Graph
from agentscale.errors import SpecError
from agentscale.graphs.validate import load_spec_text
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.space import SpaceSpec
from agentscale.sim.evaluate import SimOracle, expected_accuracy, spec_graph
from agentscale.sim.optimum import PROGRESS_EVERY, optimum, optimum_report, search_optimum
from agentscale.sim.truth import SimGraphError

TINY = {
    "name": "tiny",
    "task": {"name": "sim:math", "train": 10, "test": 80, "seed": 1},
    "models": {"l1": {"model": "sim/llama-1b"}, "g1": {"model": "sim/gemma-1b"}},
    "roles": ["assistant", "critic", "vote"],
    "max_nodes": 3,
    "budget": {"compute": 3.5},
}
SMALL_FIVE = """\
name: five
task: {name: "sim:math", train: 10, test: 100, seed: 1}
models: {l1: {model: sim/llama-1b}, l3: {model: sim/llama-3b}, l8: {model: sim/llama-8b}}
roles: [assistant, critic, vote]
max_nodes: 5
budget: {compute: 18}
"""


def brute_force(space: SpaceSpec) -> tuple[float, set[str]]:
    """Every labelling of every forward-edge set, filtered by validity and budget; the best accuracy
    and the distinct graphs (by isomorphism key) that were allowed."""
    oracle = SimOracle.for_space(space)
    models = resolve_models(space.models)
    labels = [NodeChoice(role, alias) for role in space.roles if role != "vote" for alias in space.models]
    labels += [NodeChoice("vote", None)] if "vote" in space.roles else []
    best, allowed = -1.0, set()
    for n in range(1, space.max_nodes + 1):
        pairs = [(i, j) for j in range(n) for i in range(j)]
        for bits in itertools.product((0, 1), repeat=len(pairs)):
            edges = frozenset(pair for pair, bit in zip(pairs, bits, strict=True) if bit)
            for nodes in itertools.product(labels, repeat=n):
                candidate = CandidateGraph(tuple(nodes), edges)
                if not candidate.is_valid or candidate.compute(models, 202, 275) > (space.budget.compute or 0):
                    continue
                allowed.add(candidate.canonical_key)
                best = max(best, oracle.expected_accuracy(candidate))
    return best, allowed


def test_exhaustive_optimum_matches_the_brute_force() -> None:
    space = SpaceSpec.model_validate(TINY)
    found = search_optimum(space)
    best, allowed = brute_force(space)
    assert found.accuracy == pytest.approx(best, abs=1e-12)
    assert found.candidates == len(allowed)
    assert found.compute <= 3.5 and found.candidate.canonical_key in allowed
    accuracy, candidate = optimum(space)
    assert (accuracy, candidate) == (found.accuracy, found.candidate)
    assert accuracy > SimOracle.for_space(space).expected_accuracy(
        CandidateGraph((NodeChoice("assistant", "g1"),), frozenset())
    )


def test_report_is_a_runnable_graph_with_the_reported_accuracy(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(
        "name: tiny\ntask: {name: 'sim:math', train: 10, test: 80, seed: 1}\n"
        "models: {l1: {model: sim/llama-1b}, g1: {model: sim/gemma-1b}}\n"
        "roles: [assistant, critic, vote]\nmax_nodes: 3\nbudget: {compute: 3.5}\n"
    )
    report = optimum_report(path)
    assert {"accuracy", "graph"} <= set(report) and report["simulated"] is True
    spec = load_spec_text(report["graph"])
    assert "simulated" in spec.description and spec.answer_format == "number"
    space = SpaceSpec.model_validate(TINY)
    assert expected_accuracy(spec, space) == pytest.approx(report["accuracy"])
    assert spec_graph(spec) == SimOracle.for_space(space).graph(search_optimum(space).candidate)
    graph = Graph(spec, store=None)
    assert graph.run(SimOracle.for_space(space).tasks["test"].items[0].question).answer is not None


def test_parallel_sampling_reaches_the_truth_and_the_written_graph_alike(tmp_path: Path) -> None:
    """With `sampled_nodes: parallel` the oracle scores a lone answer greedily, as the graph file the
    optimum report writes runs it; the simulated greedy call differs from the sampled one."""
    space = SpaceSpec.model_validate({**TINY, "sampled_nodes": "parallel", "defaults": {"temperature": 0.8}})
    sampled = SpaceSpec.model_validate({**TINY, "defaults": {"temperature": 0.8}})
    alone = CandidateGraph((NodeChoice("assistant", "l1"),), frozenset())
    greedy_accuracy = SimOracle.for_space(space).expected_accuracy(alone)
    assert greedy_accuracy != SimOracle.for_space(sampled).expected_accuracy(alone)
    path = tmp_path / "space.yaml"
    path.write_text(
        "name: tiny\ntask: {name: 'sim:math', train: 10, test: 80, seed: 1}\n"
        "models: {l1: {model: sim/llama-1b}, g1: {model: sim/gemma-1b}}\n"
        "roles: [assistant, critic, vote]\nmax_nodes: 3\nbudget: {compute: 3.5}\n"
        "defaults: {temperature: 0.8}\nsampled_nodes: parallel\n"
    )
    spec = load_spec_text(optimum_report(path)["graph"])
    assert spec_graph(spec) == SimOracle.for_space(space).graph(search_optimum(space).candidate)


def test_greedy_first_scores_a_models_first_parallel_answer_greedily() -> None:
    """`sampled_nodes: greedy_first`: the oracle's graph and the graph file written from the
    candidate give the first parallel answer of each model temperature 0, the others the space's."""
    space = SpaceSpec.model_validate({**TINY, "sampled_nodes": "greedy_first", "defaults": {"temperature": 0.8}})
    parallel = SpaceSpec.model_validate({**TINY, "sampled_nodes": "parallel", "defaults": {"temperature": 0.8}})
    answer, vote = NodeChoice("assistant", "l1"), NodeChoice("vote", None)
    samples = CandidateGraph((answer, answer, answer, vote), frozenset({(0, 3), (1, 3), (2, 3)}))
    oracle = SimOracle.for_space(space)
    assert oracle.expected_accuracy(samples) != SimOracle.for_space(parallel).expected_accuracy(samples)
    spec = samples.to_spec("samples", dict(space.models), defaults=space.defaults, sampled_nodes="greedy_first")
    assert spec_graph(spec) == oracle.graph(samples)


def test_latency_budget_excludes_slow_models() -> None:
    space = SpaceSpec.model_validate(
        {
            **TINY,
            "models": {"l1": {"model": "sim/llama-1b"}, "big": {"model": "sim/llama-70b"}},
            "max_nodes": 2,
            "budget": {"compute": 200, "max_latency_s": 3.0},
        }
    )
    found = search_optimum(space)
    assert all(node.model != "big" for node in found.candidate.nodes) and found.latency_s <= 3.0
    # no graph under the caps: they are named as set (the message printed every cap, None or not)
    tight = SpaceSpec.model_validate({**TINY, "budget": {"compute": 200, "max_latency_s": 0.0001}})
    with pytest.raises(SimGraphError, match=r"no candidate fits the budget \(compute=200.0, max_latency_s=0.0001\)$"):
        search_optimum(tight)
    # below every single call: said as `optimize` says it, naming the cheapest one
    with pytest.raises(SpecError, match=r"below the cheapest single call \('l1'"):
        search_optimum(SpaceSpec.model_validate({**TINY, "budget": {"compute": 0.1}}))
    unlimited = search_optimum(SpaceSpec.model_validate({**TINY, "models": space.models, "budget": {"compute": 200}}))
    assert any(node.model == "big" for node in unlimited.candidate.nodes)


def test_a_space_on_a_task_with_no_ground_truth_is_named_in_one_line() -> None:
    """The error printed the task's whole config as a Python repr (`name='rg:chain_sum' path=None ...`)."""
    space = SpaceSpec.model_validate({**TINY, "task": {"name": "rg:chain_sum", "train": 10, "test": 10}})
    with pytest.raises(SimGraphError, match=r"task 'rg:chain_sum': the ground truth needs a sim task \(sim:math, "):
        SimOracle(space)


def test_a_space_with_a_tester_is_refused_by_the_ground_truth_in_words() -> None:
    """`sim optimum` said "node 2 (tester) has no model" for a space whose roles hold a tester."""
    space = SpaceSpec.model_validate({**TINY, "roles": ["assistant", "critic", "vote", "tester"]})
    with pytest.raises(SimGraphError, match=r"roles: the ground truth does not cover 'tester'"):
        SimOracle(space)


def test_the_sim_optimum_command_prints_the_report_and_refuses_a_space_without_ground_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`agentscale sim optimum` (documented in docs/sim.md) ran in no test: its JSON is the report,
    its human output labels the figure SIMULATED and prints the runnable graph, and a space over a
    task with no ground truth is a one-line error with exit 1."""
    from agentscale.cli.app import main

    path = tmp_path / "space.yaml"
    path.write_text(
        "name: tiny\ntask: {name: 'sim:math', train: 10, test: 80, seed: 1}\n"
        "models: {l1: {model: sim/llama-1b}, g1: {model: sim/gemma-1b}}\n"
        "roles: [assistant, critic, vote]\nmax_nodes: 3\nbudget: {compute: 3.5}\n"
    )
    assert main(["sim", "optimum", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == optimum_report(path)
    assert main(["sim", "optimum", str(path)]) == 0
    out = capsys.readouterr().out
    accuracy = search_optimum(SpaceSpec.model_validate(TINY)).accuracy
    assert out.startswith(f"SIMULATED optimum of {path}: expected test accuracy {accuracy:.3f} ")
    assert "candidates within the budget scored)" in out.split("\n", 1)[0]  # "enumerated" counted only those
    assert load_spec_text(out.split("\n", 1)[1]).name == "tiny-sim-optimum"  # the graph, ready to save and run
    path.write_text(path.read_text().replace("'sim:math'", "'rg:chain_sum'"))
    assert main(["sim", "optimum", str(path)]) == 1
    err = capsys.readouterr().err
    assert "the ground truth needs a sim task" in err and "Traceback" not in err


def test_a_token_cap_excludes_graphs_whose_expected_tokens_exceed_it() -> None:
    free = search_optimum(SpaceSpec.model_validate({**TINY, "budget": {"compute": 200}}))
    oracle = SimOracle.for_space(SpaceSpec.model_validate({**TINY, "budget": {"compute": 200}}))
    cap = int(oracle.tokens(free.candidate)) - 1
    capped_space = SpaceSpec.model_validate({**TINY, "budget": {"compute": 200, "max_tokens": cap}})
    capped = search_optimum(capped_space)
    assert SimOracle.for_space(capped_space).tokens(capped.candidate) <= cap
    assert capped.candidate != free.candidate and capped.accuracy <= free.accuracy


def test_within_budget_holds_the_compute_budget() -> None:
    oracle = SimOracle.for_space(SpaceSpec.model_validate(TINY))
    one = NodeChoice("assistant", "l1")
    four = CandidateGraph((one, one, one, one, NodeChoice("vote", None)), frozenset({(0, 4), (1, 4), (2, 4), (3, 4)}))
    assert 3.5 < oracle.compute(four) < 4.5
    assert not oracle.within_budget(four)
    assert oracle.within_budget(CandidateGraph((one,), frozenset()))


def test_the_space_s_mean_lengths_set_the_compute_unit() -> None:
    space = SpaceSpec.model_validate(
        {**TINY, "task": {**TINY["task"], "mean_prompt_tokens": 500, "mean_completion_tokens": 100}}
    )
    critic = CandidateGraph((NodeChoice("assistant", "l1"), NodeChoice("critic", "l1")), frozenset({(0, 1)}))
    expected = critic.compute(resolve_models(space.models), 500, 100)
    assert SimOracle.for_space(space).compute(critic) == pytest.approx(expected)
    assert expected != pytest.approx(critic.compute(resolve_models(space.models), 202, 275))


def test_of_equally_accurate_graphs_the_optimum_is_the_cheapest() -> None:
    """A vote over two samples of one model is exactly as accurate as one sample (ties split evenly):
    the optimum must be the single call, not the vote or a costlier tie."""
    space = SpaceSpec.model_validate(
        {
            "name": "tie",
            "task": {"name": "sim:mmlu", "train": 10, "test": 80, "seed": 1},
            "models": {"l1": {"model": "sim/llama-1b"}},
            "roles": ["assistant", "vote"],
            "max_nodes": 3,
            "budget": {"compute": 3.5},
            "defaults": {"temperature": 0.7},
        }
    )
    oracle = SimOracle.for_space(space)
    one = NodeChoice("assistant", "l1")
    single = CandidateGraph((one,), frozenset())
    vote = CandidateGraph((one, one, NodeChoice("vote", None)), frozenset({(0, 2), (1, 2)}))
    assert oracle.expected_accuracy(vote) == pytest.approx(oracle.expected_accuracy(single), abs=1e-12)
    found = search_optimum(space)
    assert found.candidate == single and found.compute == pytest.approx(oracle.compute(single))


def test_an_interrupted_enumeration_gives_the_best_scored_so_far(tmp_path: Path) -> None:
    """Ctrl-C on `sim optimum` of a 5-node space (minutes) lost every graph it had scored."""
    space = SpaceSpec.model_validate({**yaml.safe_load(SMALL_FIVE), "max_nodes": 4})  # 2,183 candidates
    reports: list[tuple[int, float]] = []

    def interrupt(scored: int, best: float) -> None:
        reports.append((scored, best))
        raise KeyboardInterrupt  # as Ctrl-C (or SIGTERM, which agentscale takes as it) would

    try:
        found = search_optimum(space, on_progress=interrupt)
    except KeyboardInterrupt:  # raised on, it would also stop pytest itself
        pytest.fail("the interruption went through: nothing of the enumeration was kept")
    whole = search_optimum(space)
    assert found.interrupted and not whole.interrupted
    assert reports == [(PROGRESS_EVERY, found.accuracy)] and found.candidates == PROGRESS_EVERY < whole.candidates
    oracle = SimOracle.for_space(space)
    assert found.accuracy == pytest.approx(oracle.expected_accuracy(found.candidate))
    assert found.accuracy <= whole.accuracy


def test_ctrl_c_on_the_command_prints_the_best_so_far_and_exits_130(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import with_default_sigint

    path = tmp_path / "five.yaml"  # 5 nodes: minutes of enumeration
    path.write_text(SMALL_FIVE)
    command = [sys.executable, "-m", "agentscale.cli.app", "sim", "optimum", str(path), "--json"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=with_default_sigint
    )
    time.sleep(12)  # imports, then the first thousands of graphs
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    report = json.loads(stdout)
    assert report["interrupted"] is True and report["candidates"] > 0
    graph = load_spec_text(report["graph"])  # a file saved from it says what it is, not "exhaustive optimum"
    assert graph.name == "five-sim-best-so-far" and "optimum" not in (graph.description or "")
    assert "the graph above is the best scored so far, not the optimum" in " ".join(stderr.split()), stderr
    assert "error: interrupted" not in stderr  # said once, by the command
