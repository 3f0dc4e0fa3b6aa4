"""Textual feedback: lenient parsing, validation, clamping; injected output never escapes the space."""

from __future__ import annotations

import numpy as np

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import resolve_models
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import apply_agent_update, parse_agent_update
from agentscale.optimize.problem import SearchProblem

MODELS = {"small": ModelSpec(model="sim/llama-1b", params_b=1.0), "big": ModelSpec(model="sim/llama-8b", params_b=8.0)}


def distribution(budget: float = 10.0) -> GraphDistribution:
    problem = SearchProblem(resolve_models(MODELS), ("assistant", "fuser", "vote"), 4, budget, 202.0, 275.0)
    return GraphDistribution(problem)


def test_json_inside_prose_and_fences_is_found() -> None:
    reply = 'Sure! Here is my update:\n```json\n{"size": {"3": 0.7}, "models": {"big": 0.9}}\n```\nGood luck.'
    update, why = parse_agent_update(reply)
    assert why is None and update is not None and update.size == {3: 0.7}


def test_prose_only_and_unknown_fields_are_rejected() -> None:
    assert parse_agent_update("I think you should use bigger models.")[0] is None
    update, why = parse_agent_update('{"budget": 1000000, "size": {"2": 0.5}}')
    assert update is None and why and "budget" in why


def test_out_of_range_and_unknown_values_are_not_applied() -> None:
    dist = distribution()
    before = dist.state()
    update, _ = parse_agent_update(
        '{"size": {"99": 1.0, "2": 7.5}, "models": {"gpt-9": 1.0, "big": -3}, "edges": [[3, 1, 0.9], [0, 9, 0.5]]}'
    )
    assert update is not None
    proposed, problems = apply_agent_update(dist, update)
    assert proposed is None and len(problems) == 6
    assert dist.state() == before


def test_valid_update_moves_probabilities_and_clamps() -> None:
    dist = distribution()
    update, _ = parse_agent_update('{"size": {"3": 1.0}, "models": {"big": 1.0}, "edges": [[0, 2, 0.0]]}')
    assert update is not None
    apply_agent_update(dist, update)
    assert dist.size_probs()[2] > 0.4
    assert dist.model_probs(0)[1] > 0.7
    assert 0 < dist.edge_probs()[0, 2] < 0.5
    assert np.all(np.isfinite(dist.size_logits))


def test_proposed_graph_must_fit_the_budget_and_space() -> None:
    over = '{"graph": {"nodes": [{"role": "assistant", "model": "big"}, {"role": "assistant", "model": "big"}, {"role": "vote"}], "edges": [[0, 2], [1, 2]]}}'
    update, _ = parse_agent_update(over)
    assert update is not None
    proposed, problems = apply_agent_update(distribution(budget=10.0), update)
    assert proposed is None and "over budget" in problems[0]
    outside = '{"graph": {"nodes": [{"role": "boss", "model": "small"}]}}'
    proposed, problems = apply_agent_update(distribution(), parse_agent_update(outside)[0])  # type: ignore[arg-type]
    assert proposed is None and "outside the space" in problems[0]
    fits = '{"graph": {"nodes": [{"role": "assistant", "model": "small"}, {"role": "assistant", "model": "small"}, {"role": "fuser", "model": "small"}]}}'
    proposed, problems = apply_agent_update(distribution(), parse_agent_update(fits)[0])  # type: ignore[arg-type]
    assert proposed is not None and problems == [] and proposed.predecessors[2] == (0, 1)


def test_a_reply_nested_beyond_the_json_parser_is_no_update() -> None:
    update, why = parse_agent_update('{"size": ' + "[" * 100_000)
    assert update is None and why
