"""The CEO coordinator as a search dimension: space rules, the cost of rounds, sampling, updates, and
`agentscale optimize` end to end on SIMULATED models (a simulated CEO, see agentscale/sim/ceo.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agentscale.agents.coordinator import MAX_ATTEMPTS
from agentscale.cli.app import main
from agentscale.errors import SpecError
from agentscale.graphs.located import load_located
from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice, resolve_models
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import apply_agent_update, parse_agent_update
from agentscale.optimize.methods.reinforce import reinforce_step
from agentscale.optimize.objective import Observation
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.space import space_from_data
from agentscale.optimize.trials import candidate_from_json, candidate_to_json
from agentscale.storage.db import Store

MODELS = {"small": ModelSpec(model="sim/llama-1b", params_b=1.0), "big": ModelSpec(model="sim/llama-8b", params_b=8.0)}
SPACE = """\
name: ceo-space
task: {name: "sim:math", train: 12, test: 20, seed: 0}
models:
  small: {model: sim/llama-1b, params_b: 1.0}
  big: {model: sim/llama-8b, params_b: 8.0}
roles: [assistant, fuser, vote]
max_nodes: 3
budget: {compute: 30}
coordinator: {models: [small, big], max_rounds: 2}
optimizer: {method: agent-reinforce, iterations: 3, samples: 3, minibatch: 6, seed: 0}
"""

REQUIRED = SPACE.replace("max_rounds: 2}", "max_rounds: 2, optional: false}")  # every crowned graph has a CEO


def _space(text: str = SPACE):  # type: ignore[no-untyped-def]
    return space_from_data(load_located(text, "s.yaml"), "s.yaml")


def _problem(ceo: tuple[CeoChoice | None, ...], budget: float | None = 60.0) -> SearchProblem:
    return SearchProblem(resolve_models(MODELS), ("assistant", "fuser", "vote"), 4, budget, 202.0, 275.0, ceo)


WIDE = CandidateGraph(
    (NodeChoice("assistant", "small"), NodeChoice("assistant", "small"), NodeChoice("fuser", "small")),
    frozenset({(0, 2), (1, 2)}),
)


def test_space_rejects_unknown_and_repeated_ceo_models_by_path_and_line() -> None:
    with pytest.raises(SpecError) as caught:
        _space(SPACE.replace("models: [small, big]", "models: [small, huge, small]"))
    text = str(caught.value)
    assert "coordinator.models[1] (line 9): unknown model alias 'huge'" in text
    assert "lists a model twice" in text


def test_a_ceo_the_budget_cannot_pay_for_is_refused_up_front() -> None:
    with pytest.raises(SpecError, match=r"coordinator.models\[1\].*'big' over 2 rounds costs at least"):
        SearchProblem.from_space(_space(SPACE.replace("compute: 30", "compute: 12")))


def test_rounds_and_ceo_calls_are_costed() -> None:
    problem = _problem((None,))
    one_pass = problem.compute(WIDE)
    with_ceo = problem.compute(CandidateGraph(WIDE.nodes, WIDE.edges, CeoChoice("small", 3)))
    assert with_ceo > 3 * one_pass  # three passes (later sources read one more answer) plus 3 CEO calls
    bigger = problem.compute(CandidateGraph(WIDE.nodes, WIDE.edges, CeoChoice("big", 3)))
    assert bigger > with_ceo


def test_the_ceo_is_part_of_identity_json_and_the_graph_file() -> None:
    led = CandidateGraph(WIDE.nodes, WIDE.edges, CeoChoice("big", 2))
    assert led.canonical_key != WIDE.canonical_key
    assert candidate_from_json(candidate_to_json(led)) == led
    assert candidate_from_json(candidate_to_json(WIDE)) == WIDE and "ceo" not in candidate_to_json(WIDE)
    spec = led.to_spec("g", MODELS)
    assert spec.coordinator is not None and spec.coordinator.model == "big" and spec.coordinator.max_rounds == 2
    assert set(spec.models) == {"small", "big"}  # the CEO's model ships with the graph
    assert "CEO coordinator: big" in led.describe()


def test_sampling_covers_the_dimension_only_when_searched() -> None:
    rng = np.random.default_rng(0)
    off = GraphDistribution(_problem((None,)))
    assert all(off.sample(rng).ceo is None for _ in range(50))
    choices = (None, CeoChoice("small", 2), CeoChoice("big", 2))
    searched = GraphDistribution(_problem(choices))
    seen = {searched.sample(rng).ceo for _ in range(200)}
    assert seen == set(choices)
    forced = GraphDistribution(_problem(choices[1:]))
    assert all(forced.sample(rng).ceo is not None for _ in range(50))


def test_reinforce_moves_toward_the_choice_that_paid() -> None:
    choices = (None, CeoChoice("small", 2))
    distribution = GraphDistribution(_problem(choices))
    led = CandidateGraph(WIDE.nodes, WIDE.edges, choices[1])
    batch = [Observation(led, 0.8, 10.0, 1.0, 8, 0.8), Observation(WIDE, 0.2, 3.0, 1.0, 8, 0.2)]
    before = distribution.ceo_probs()[1]
    reinforce_step(distribution, batch, 1.0)
    assert distribution.ceo_probs()[1] > before


def test_agent_updates_can_set_and_propose_the_coordinator_within_the_space() -> None:
    choices = (None, CeoChoice("small", 2))
    distribution = GraphDistribution(_problem(choices))
    update, why = parse_agent_update(
        '{"coordinator": {"small": 0.9, "big": 0.5}, "graph": {"nodes": [{"role": "assistant", "model": "small"}], '
        '"edges": [], "coordinator": "small"}}'
    )
    assert why is None and update is not None
    proposed, problems = apply_agent_update(distribution, update)
    assert distribution.ceo_probs()[1] > 0.5
    assert problems == ["coordinator choice 'big' is not one of ['off', 'small']"]
    assert proposed is not None and proposed.ceo == choices[1]
    update, _ = parse_agent_update(
        '{"graph": {"nodes": [{"role": "assistant", "model": "small"}], "coordinator": "x"}}'
    )
    assert update is not None
    proposed, problems = apply_agent_update(distribution, update)
    assert proposed is None and "proposed coordinator 'x'" in problems[0]


def test_optimize_can_crown_a_ceo_led_graph_that_then_runs(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(REQUIRED)
    best = tmp_path / "best.yaml"
    assert main(["optimize", str(space), "--json", "--out", str(best)]) == 0
    report = json.loads(capsys.readouterr().out)
    searched = report["best"]["graph"]
    assert "CEO coordinator" in searched  # every sampled graph has a CEO (pilots aside)
    assert "coordinator:" in best.read_text()
    assert main(["run", str(best), "-q", "[sim:math#0003] Solve problem 3.", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["answer"] is not None and run["rounds"][0]["decision"]["source"] == "ceo"


def test_the_worst_case_of_a_ceo_led_graph_counts_every_round_and_ceo_retry() -> None:
    led = CandidateGraph(WIDE.nodes, WIDE.edges, CeoChoice("big", 3))
    assert WIDE.worst_case_calls() == 3
    assert led.worst_case_calls() == 3 * (3 + MAX_ATTEMPTS)  # three rounds of the team, three CEO replies each
    assert led.worst_case_tokens(200.0, 512) > 3 * WIDE.worst_case_tokens(200.0, 512)


def test_the_spend_cap_holds_for_ceo_led_graphs(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """A CEO-led evaluation is projected at its worst case (every round, every CEO retry), so it is
    refused before it can cross `max_spend`; the old projection counted one pass of the team and let
    a run with a cap of 30 calls spend 44. Nothing CEO-led fits here, so the run says so and fails."""
    error = _failed_optimization(
        tmp_path,
        monkeypatch,
        capsys,
        REQUIRED.replace("minibatch: 6, seed: 0}", "minibatch: 6, seed: 0, max_spend: {calls: 30}}"),
    )
    assert "only a CEO-led graph can be crowned, but the search evaluated none" in error
    assert "max_spend.calls=30 would be crossed" in error and "Traceback" not in error
    store = Store(tmp_path / "o.db")
    (run,) = store.list_runs()
    assert 0 < store.spend(run.id)["calls"] <= 30


def test_a_required_ceo_the_search_never_reached_is_an_error_not_a_ceo_less_crown(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """One iteration holds only the pilot's graphs, which run without a CEO: with `optional: false`
    none of them may be crowned (the fallback crowned one and blamed the spend cap)."""
    error = _failed_optimization(
        tmp_path, monkeypatch, capsys, REQUIRED.replace("iterations: 3, samples: 3", "iterations: 1, samples: 2")
    )
    assert "the search stopped: finished 1 iterations. Raise optimizer.iterations and run again" in error
    assert "Traceback" not in error


def test_a_required_ceo_leads_the_probes_too(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """The width and depth probes ran without a CEO under `optional: false`: two of the second
    iteration's evaluations could never be crowned, and a run of two iterations failed after paying."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(REQUIRED.replace("iterations: 3, samples: 3", "iterations: 2, samples: 2"))
    assert main(["optimize", str(space), "--no-test", "--json"]) == 0
    store = Store(tmp_path / "o.db")
    (run,) = store.list_runs()
    searched = [candidate_from_json(t.candidate_json) for t in store.trials(run.id) if t.kind == "search"]
    assert searched and all(c.ceo is not None for c in searched)  # the probes among them
    capsys.readouterr()
    assert main(["runs", "show", run.id]) == 0  # its trial table kept only a graph's first line: no CEO
    assert "+ CEO" in capsys.readouterr().out


def _failed_optimization(tmp_path: Path, monkeypatch, capsys, text: str) -> str:  # type: ignore[no-untyped-def]
    """`agentscale optimize --no-test` on the space `text`, which must fail (exit 1): its stderr."""
    monkeypatch.setenv("AGENTSCALE_DB", str(tmp_path / "o.db"))
    space = tmp_path / "space.yaml"
    space.write_text(text)
    assert main(["optimize", str(space), "--no-test"]) == 1
    return str(capsys.readouterr().err)


def test_the_probes_take_a_ceo_they_fit_with_whichever_is_listed_first() -> None:
    """With the dearer CEO listed first no wide probe fitted the budget and the chain shrank to one
    node: both probes were dropped, and the width/depth step skipped."""
    from agentscale.optimize.methods.agent_reinforce import AgentReinforce

    space = _space(REQUIRED.replace("models: [small, big]", "models: [big, small]"))
    method = AgentReinforce(SearchProblem.from_space(space))
    method.singles = {
        "small": Observation(CandidateGraph((NodeChoice("assistant", "small"),), frozenset()), 0.9, 1, 1, 12, 0.9)
    }
    probes = method._probes()
    assert [(p.size, p.ceo) for p in probes] == [(3, CeoChoice("small", 2)), (3, CeoChoice("small", 2))]
