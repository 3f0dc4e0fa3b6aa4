"""Candidate graphs: validity, isomorphism, compute cost, conversion to runnable graphs."""

from __future__ import annotations

import pytest

from agentscale.graphs.spec import ModelSpec
from agentscale.graphs.validate import graph_issues
from agentscale.models.cost import call_flops, compute_unit
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models

A = NodeChoice("assistant", "small")
V = NodeChoice("vote", None)
F = NodeChoice("fuser", "big")
MODELS = {"small": ModelSpec(model="sim/llama-1b", params_b=1.0), "big": ModelSpec(model="sim/llama-8b", params_b=8.0)}


def test_validity_rules() -> None:
    assert CandidateGraph((A, A, V), frozenset({(0, 2), (1, 2)})).is_valid
    assert "has no predecessors" in CandidateGraph((V,), frozenset()).problems()[0]
    assert "cannot reach the output" in CandidateGraph((A, A), frozenset()).problems()[0]
    assert "not forward" in CandidateGraph((A, A), frozenset({(1, 0)})).problems()[0]
    assert any(
        "only vote nodes" in p for p in CandidateGraph((A, NodeChoice("vote", "small")), frozenset({(0, 1)})).problems()
    )
    assert "a vote over one input" in CandidateGraph((A, V, F), frozenset({(0, 1), (1, 2)})).problems()[0]


def test_isomorphic_candidates_share_a_key() -> None:
    x = NodeChoice("assistant", "big")
    one = CandidateGraph((A, x, V), frozenset({(0, 2), (1, 2)}))
    two = CandidateGraph((x, A, V), frozenset({(0, 2), (1, 2)}))
    chain = CandidateGraph((A, x, V), frozenset({(0, 1), (1, 2)}))
    assert one.canonical_key == two.canonical_key != chain.canonical_key


def test_compute_follows_the_paper_cost_model() -> None:
    graph = CandidateGraph((A, A, F), frozenset({(0, 2), (1, 2)}))
    models = resolve_models(MODELS)
    expected = 2 * call_flops(1.0, 200, 100) + call_flops(8.0, 400, 100)
    assert graph.compute(models, 200, 100) == pytest.approx(expected / compute_unit(200, 100))
    assert CandidateGraph((A,), frozenset()).compute(models, 200, 100) == pytest.approx(
        call_flops(1.0, 200, 100) / compute_unit(200, 100), rel=0.05
    )


def test_to_spec_is_a_valid_runnable_graph() -> None:
    graph = CandidateGraph((A, A, F), frozenset({(0, 2), (1, 2)}))
    spec = graph.to_spec("cand", MODELS)
    assert graph_issues(spec) == []
    assert spec.output == "out" and set(spec.models) == {"small", "big"}
    assert "0 | small | assistant | -" in graph.describe()
