"""Candidate graphs: validity, isomorphism, compute cost, conversion to runnable graphs."""

from __future__ import annotations

import ast
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentscale.graphs.spec import ModelSpec
from agentscale.graphs.validate import graph_issues
from agentscale.models.cost import call_flops, compute_unit
from agentscale.optimize.candidate import CandidateGraph, CeoChoice, NodeChoice, resolve_models
from agentscale.optimize.distribution import repair

A = NodeChoice("assistant", "small")
V = NodeChoice("vote", None)
F = NodeChoice("fuser", "big")
MODELS = {"small": ModelSpec(model="sim/llama-1b", params_b=1.0), "big": ModelSpec(model="sim/llama-8b", params_b=8.0)}


def test_validity_rules() -> None:
    assert CandidateGraph((A, A, A, V), frozenset({(0, 3), (1, 3), (2, 3)})).is_valid
    assert "has no predecessors" in CandidateGraph((V,), frozenset()).problems()[0]
    assert "cannot reach the output" in CandidateGraph((A, A), frozenset()).problems()[0]
    assert "not forward" in CandidateGraph((A, A), frozenset({(1, 0)})).problems()[0]
    assert any(
        "only vote and tester nodes" in p
        for p in CandidateGraph((A, NodeChoice("vote", "small")), frozenset({(0, 1)})).problems()
    )
    assert "a vote over one input" in CandidateGraph((A, V, F), frozenset({(0, 1), (1, 2)})).problems()[0]
    # two answers agree or tie, and a tie goes to the first finished: the vote passes one on
    assert "a vote over two inputs" in CandidateGraph((A, A, V), frozenset({(0, 2), (1, 2)})).problems()[0]
    tester = NodeChoice("tester", None)
    assert CandidateGraph((A, A, tester), frozenset({(0, 2), (1, 2)})).is_valid  # it runs both: a choice


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


def brute_force_form(candidate: CandidateGraph) -> str:
    """The canonical form by trying every relabelling (what the key was before it was pruned)."""
    best: tuple[object, ...] | None = None
    for order in itertools.permutations(range(candidate.size - 1)):
        mapping = {old: new for new, old in enumerate(order)} | {candidate.output: candidate.output}
        if any(mapping[i] >= mapping[j] for i, j in candidate.edges):
            continue
        labels = [""] * candidate.size
        for old, new in mapping.items():
            labels[new] = candidate.nodes[old].label()
        form = (tuple(labels), tuple(sorted((mapping[i], mapping[j]) for i, j in candidate.edges)))
        best = form if best is None or form < best else best
    return repr(best)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 7))
def test_the_pruned_canonical_form_is_the_brute_force_one(seed: int, size: int) -> None:
    rng = random.Random(seed)
    labels = [A, F, NodeChoice("assistant", "big"), NodeChoice("critic", "small"), V]
    nodes = tuple(rng.choice(labels[:1] + labels[2:3]) if i == 0 else rng.choice(labels) for i in range(size))
    edges = {(i, j) for j in range(size) for i in range(j) if rng.random() < 0.45}
    candidate = repair(nodes, edges)
    assert candidate.canonical_key == brute_force_form(candidate)


def from_form(key: str) -> CandidateGraph:
    """The graph a canonical key writes out: its nodes' labels in order, then its edges."""
    labels, edges = ast.literal_eval(key)
    nodes = tuple(NodeChoice(*label.split(":")) if ":" in label else NodeChoice(label, None) for label in labels)
    return CandidateGraph(nodes, frozenset(edges))


def relabelled(candidate: CandidateGraph, rng: random.Random) -> CandidateGraph:
    """The same graph with its nodes renumbered in another topological order (the output last)."""
    order: list[int] = []
    while len(order) < candidate.size - 1:
        ready = [
            v for v in range(candidate.size - 1) if v not in order and set(candidate.predecessors[v]) <= set(order)
        ]
        order.append(rng.choice(ready))
    position = {old: new for new, old in enumerate(order)} | {candidate.output: candidate.output}
    nodes = [candidate.nodes[0]] * candidate.size
    for old, new in position.items():
        nodes[new] = candidate.nodes[old]
    return CandidateGraph(tuple(nodes), frozenset((position[i], position[j]) for i, j in candidate.edges))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**9), st.integers(8, 9))
def test_large_graphs_keys_are_exact(seed: int, size: int) -> None:
    """Above 7 nodes the key is the least form in an order refined by inputs and successors: the same
    for every numbering of a graph, and it writes out that very graph (the brute force agrees), so
    two graphs share a key only when they are one graph."""
    rng = random.Random(seed)
    labels = [A, A, NodeChoice("critic", "small"), F, V]
    nodes = tuple(A if i == 0 else rng.choice(labels) for i in range(size))
    candidate = repair(nodes, {(i, j) for j in range(size) for i in range(j) if rng.random() < 0.35})
    assert relabelled(candidate, rng).canonical_key == candidate.canonical_key
    if candidate.size == 8:  # 5,040 orders: the brute force is quick enough here
        assert brute_force_form(from_form(candidate.canonical_key)) == brute_force_form(candidate)


def test_critics_of_one_answer_and_of_two_are_different_graphs() -> None:
    """Two 8-node graphs once shared a key (a signature of each node's ancestors): two critics of
    answer 0 with answer 1 read by the fuser, or one critic of each answer with answer 0 read."""
    critic = NodeChoice("critic", "small")
    nodes = (A, A, critic, critic, A, A, A, F)
    padding = {(4, 7), (5, 7), (6, 7)}
    same_answer = CandidateGraph(nodes, frozenset({(0, 2), (0, 3), (1, 7), (2, 7), (3, 7)} | padding))
    each_answer = CandidateGraph(nodes, frozenset({(0, 2), (1, 3), (0, 7), (2, 7), (3, 7)} | padding))
    assert same_answer.is_valid and each_answer.is_valid
    assert same_answer.canonical_key != each_answer.canonical_key


def test_with_parallel_sampling_only_side_by_side_answers_sample() -> None:
    """`sampled_nodes: parallel`: a lone answer, critics and fusers are greedy; parallel samples are not."""
    single = CandidateGraph((A,), frozenset())
    samples = CandidateGraph((A, A, A, V), frozenset({(0, 3), (1, 3), (2, 3)}))
    fused = CandidateGraph((A, A, F), frozenset({(0, 2), (1, 2)}))
    chain = CandidateGraph((A, NodeChoice("critic", "big")), frozenset({(0, 1)}))
    assert [g.greedy_nodes("all") for g in (single, samples, fused, chain)] == [frozenset()] * 4
    assert single.greedy_nodes("parallel") == {0}
    assert samples.greedy_nodes("parallel") == frozenset()  # the vote has no model
    assert fused.greedy_nodes("parallel") == {2}
    assert chain.greedy_nodes("parallel") == {0, 1}
    spec = fused.to_spec("cand", MODELS, sampled_nodes="parallel")
    assert [node.temperature for node in spec.nodes] == [None, None, 0.0]
    assert graph_issues(spec) == []
    assert [node.temperature for node in fused.to_spec("cand", MODELS).nodes] == [None, None, None]


def test_greedy_first_makes_each_models_first_parallel_answer_greedy() -> None:
    """`sampled_nodes: greedy_first`: one greedy answer per model among the parallel ones, the rest
    sample; a lone answer, critics and fusers stay greedy as with `parallel`."""
    big = NodeChoice("assistant", "big")
    tester = NodeChoice("tester", None)
    mixed = CandidateGraph((big, big, A, big, A, tester), frozenset({(i, 5) for i in range(5)}))
    assert mixed.greedy_nodes("greedy_first") == {0, 2}
    assert mixed.greedy_nodes("parallel") == frozenset()
    single = CandidateGraph((A,), frozenset())
    fused = CandidateGraph((A, A, F), frozenset({(0, 2), (1, 2)}))
    assert single.greedy_nodes("greedy_first") == {0}
    assert fused.greedy_nodes("greedy_first") == {0, 2}
    spec = mixed.to_spec("cand", MODELS, sampled_nodes="greedy_first")
    assert [node.temperature for node in spec.nodes] == [0.0, None, 0.0, None, None, None]
    assert graph_issues(spec) == []


def test_short_names_say_what_a_baseline_is() -> None:
    a, vote, tester = NodeChoice("assistant", "l8"), NodeChoice("vote", None), NodeChoice("tester", None)
    fan_in = frozenset({(0, 3), (1, 3), (2, 3)})
    assert CandidateGraph((a,), frozenset()).short_name() == "single call of l8"
    assert CandidateGraph((a, a, a, vote), fan_in).short_name() == "majority vote of 3 x l8"
    assert CandidateGraph((a, a, a, tester), fan_in).short_name() == "tester of 3 x l8"
    mixed = CandidateGraph((a, NodeChoice("assistant", "l1"), a, tester), fan_in)
    assert mixed.short_name() == mixed.diagram_line() and "l1" in mixed.diagram_line()
    fused = CandidateGraph((a, NodeChoice("fuser", "l8"), vote), frozenset({(0, 1), (0, 2), (1, 2)}))
    assert fused.short_name() == fused.diagram_line()  # was "majority vote of 2 x l8" (the reports review)
    chained = CandidateGraph((a, a, vote), frozenset({(0, 1), (1, 2)}))  # the vote reads one of the two
    assert chained.short_name() == chained.diagram_line()
    copied = CandidateGraph((a, vote), frozenset({(0, 1)}))  # "majority vote of 1 x l8"
    assert copied.short_name() == copied.diagram_line()
    led = CandidateGraph((a,), frozenset(), CeoChoice("l8", 2))  # was "single call of l8": a discussion
    assert led.short_name() == "[0:assistant:l8] + CEO l8 (up to 2 rounds)"
    # a fan-in and a chain of the same nodes had one name in the report's tables and plots (the reports audit)
    fuser = NodeChoice("fuser", "l3")
    fanned = CandidateGraph(
        (NodeChoice("assistant", "l3"), NodeChoice("assistant", "l1"), fuser), frozenset({(0, 2), (1, 2)})
    )
    chain = CandidateGraph(
        (NodeChoice("assistant", "l3"), NodeChoice("assistant", "l1"), fuser), frozenset({(0, 1), (1, 2)})
    )
    assert fanned.short_name() == "[0:assistant:l3] [1:assistant:l1] -> [2:fuser:l3]"
    assert chain.short_name() == "[0:assistant:l3] -> [1:assistant:l1] -> [2:fuser:l3]"
