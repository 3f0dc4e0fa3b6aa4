"""Ground truth: the exact engine against an independent brute force, Monte-Carlo, the provider's own
distributions, and real runs through `agentscale.Graph` (gateway, litellm, executor)."""

from __future__ import annotations

import asyncio
import itertools
import math

import numpy as np
import pytest

from agentscale import Graph, RunResult
from agentscale.agents.roles import Candidate, builtin_roles
from agentscale.graphs.validate import load_spec_text
from agentscale.sim.behavior import ROLES, VOTE, behavior_role, call_distribution
from agentscale.sim.evaluate import engine_for, expected_accuracy, spec_graph
from agentscale.sim.items import ItemBank, bank
from agentscale.sim.parse import read_request
from agentscale.sim.population import sim_model
from agentscale.sim.provider import answer_distribution
from agentscale.sim.roofline import call_latency, call_tokens
from agentscale.sim.tasks import load_sim_task
from agentscale.sim.truth import SimGraph, TruthEngine

L1, L3, L8, G1 = "sim/llama-1b", "sim/llama-3b", "sim/llama-8b", "sim/gemma-1b"

GRAPHS = {
    # a shared ancestor: b and f both see a's answer, so f's inputs are correlated
    "diamond": SimGraph.build([("assistant", L1), ("critic", G1), ("fuser", L3)], [(), (0,), (0, 1)]),
    # a vote over different models: ties go to the input that finishes first
    "mixed-vote": SimGraph.build([("assistant", L1), ("assistant", G1), ("vote", None)], [(), (), (0, 1)]),
    # a verifier over two samples, one of them greedy
    "verifier": SimGraph.build(
        [("assistant", L1), ("assistant", L1), ("verifier", L3)], [(), (), (0, 1)], [0.0, 0.7, 0.7]
    ),
    # a vote whose inputs share an ancestor and sit at different depths
    "deep-vote": SimGraph.build(
        [("assistant", L1), ("critic", L1), ("assistant", G1), ("vote", None)], [(), (0,), (), (0, 1, 2)]
    ),
}


def brute_force(graph: SimGraph, items: ItemBank) -> np.ndarray:
    """P(output right) per item by summing over every joint answer assignment (written for the test)."""
    m = items.plausibility.shape[1] + 1
    result = []
    for row in range(items.size):
        one = ItemBank.of([items.items[row]])
        finish: list[float] = []  # this item's modelled clock: what orders a vote's inputs in the executor
        for node, parents in zip(graph.nodes, graph.preds, strict=True):
            own = 0.0
            if node.model is not None:
                prompt, completion = call_tokens(
                    one.prompt_tokens, one.completion_tokens, len(parents), ROLES[node.role].length_factor
                )
                own = float(call_latency(sim_model(node.model), prompt, completion)[0])
            finish.append(max((finish[p] for p in parents), default=0.0) + own)
        cache: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

        def conditional(
            j: int, inputs: tuple[int, ...], one: ItemBank = one, cache: dict = cache, finish: list[float] = finish
        ) -> np.ndarray:
            node = graph.nodes[j]
            counts = (
                tuple(int(x) for x in np.bincount(np.array(inputs, dtype=int), minlength=m)) if inputs else (0,) * m
            )
            if node.role == VOTE:
                top = max(counts)
                firsts = sorted(range(len(inputs)), key=lambda k: (finish[graph.preds[j][k]], graph.preds[j][k]))
                winner = next(inputs[k] for k in firsts if counts[inputs[k]] == top)
                return np.eye(m)[winner]
            key = (j, counts)
            if key not in cache:
                dist = call_distribution(one, sim_model(node.model or ""), node.role, np.array([counts]))[0, 0]
                cache[key] = np.eye(m)[int(np.argmax(dist))] if node.greedy else dist
            return cache[key]

        right = 0.0
        for assignment in itertools.product(range(m), repeat=len(graph.nodes)):
            probability = 1.0
            for j in range(len(graph.nodes)):
                probability *= conditional(j, tuple(assignment[p] for p in graph.preds[j]))[assignment[j]]
                if probability == 0.0:
                    break
            if assignment[-1] == 0:
                right += probability
        result.append(right)
    return np.array(result)


def test_truth_engines_are_kept_for_a_bounded_number_of_tasks() -> None:
    """Each engine is kept for reuse, but a process looping over generated spaces or tasks kept every
    one (≈340 KB each): the least recently used ones are dropped."""
    first = load_sim_task("math", size=3)
    engine = engine_for(first)
    assert engine_for(first) is engine  # reused
    for size in range(4, 24):
        engine_for(load_sim_task("math", size=size))
    assert engine_for(first) is not engine  # dropped, built again


@pytest.mark.parametrize("name", list(GRAPHS))
def test_exact_engine_matches_brute_force_enumeration(name: str) -> None:
    items = bank("mmlu", 0, 25)
    exact, is_exact = TruthEngine(items).correct_probability(GRAPHS[name])
    assert is_exact
    np.testing.assert_allclose(exact, brute_force(GRAPHS[name], items), atol=1e-9)


@pytest.mark.parametrize("name", ["diamond", "mixed-vote", "deep-vote"])
def test_monte_carlo_fallback_agrees_within_its_standard_error(name: str) -> None:
    items = bank("math", 0, 200)
    exact = TruthEngine(items).estimate(GRAPHS[name])
    sampled = TruthEngine(items, max_cells=1).estimate(GRAPHS[name])
    assert exact.exact and not sampled.exact and sampled.stderr > 0
    assert abs(sampled.accuracy - exact.accuracy) < 4 * sampled.stderr


def test_provider_distribution_is_the_engines_table() -> None:
    """The provider samples from exactly the conditional the ground truth integrates over."""
    items = load_sim_task("math", size=5).items
    engine = engine_for(load_sim_task("math", size=5))
    roles = builtin_roles()
    for row, item in enumerate(items):
        sim = engine.bank.items[row]
        shown = [sim.value(1), sim.value(0), sim.value(1)]
        for role_name in ("assistant", "critic", "fuser", "verifier"):
            for model in (L1, L8):
                candidates = [Candidate(f"n{i}", str(v)) for i, v in enumerate(shown)]
                request = read_request(roles[role_name].messages(item.question, candidates, "number"))
                node = SimGraph.build([("assistant", model)] * 3 + [(role_name, model)], [(), (), (), (0, 1, 2)])
                counts = np.array([[1, 2, 0, 0, 0]])
                expected = call_distribution(engine.bank, sim_model(model), behavior_role(role_name, True), counts)[
                    row, 0
                ]
                assert request.behaviour == node.nodes[-1].role
                np.testing.assert_allclose(answer_distribution(request, sim_model(model)), expected, atol=1e-12)


AGREEMENT = {
    "diamond": """
name: diamond
models: {small: {model: sim/llama-1b}, gem: {model: sim/gemma-1b}, mid: {model: sim/llama-3b}}
nodes:
  - {id: a, role: assistant, model: small}
  - {id: b, role: critic, model: gem}
  - {id: out, role: fuser, model: mid}
edges: [a -> b, "a, b -> out"]
answer_format: number
""",
    "mixed-vote": """
name: mixed-vote
models: {small: {model: sim/llama-1b}, gem: {model: sim/gemma-1b}, big: {model: sim/llama-8b}}
nodes:
  - {id: a, role: assistant, model: big}
  - {id: b, role: assistant, model: small}
  - {id: c, role: assistant, model: gem}
  - {id: v, role: vote}
edges: ["a, b, c -> v"]
answer_format: number
""",
    "verifier": """
name: verifier
models: {small: {model: sim/llama-1b}, mid: {model: sim/llama-3b}}
nodes:
  - {id: a, role: assistant, model: small}
  - {id: b, role: assistant, model: small}
  - {id: check, role: verifier, model: mid}
edges: ["a, b -> check"]
""",
}


async def _run_all(graph: Graph, questions: list[str]) -> list[str | None]:
    limit = asyncio.Semaphore(24)

    async def one(question: str) -> str | None:
        async with limit:
            return (await graph.arun(question)).answer

    return await asyncio.gather(*(one(q) for q in questions))


def test_ground_truth_agrees_with_real_runs_through_the_gateway() -> None:
    """Per item, P(right) from the engine vs the outcome of a real run: |z| of the sum stays small."""
    task = load_sim_task("math", size=200)
    total_z = []
    for name, text in AGREEMENT.items():
        spec = load_spec_text(text)
        graph = Graph(spec, store=None)
        answers = asyncio.run(_run_all(graph, [item.question for item in task.items]))
        outcomes = np.array([task.score(a, item).correct for a, item in zip(answers, task.items, strict=True)])
        probabilities, exact = engine_for(task).correct_probability(spec_graph(spec))
        assert exact
        z = (outcomes.sum() - probabilities.sum()) / math.sqrt(np.sum(probabilities * (1 - probabilities)))
        assert abs(z) < 3.5, (name, outcomes.mean(), probabilities.mean())
        assert expected_accuracy(spec, task) == pytest.approx(probabilities.mean())
        total_z.append(z)
    assert abs(sum(total_z)) / math.sqrt(len(total_z)) < 3.5


def test_inputs_that_finish_together_are_taken_in_node_order_whatever_the_edges_list() -> None:
    """A greedy and a sampled call of one model finish at the same modelled time; a vote of the two
    goes, on a tie, to the first in the graph's node order, as the ground truth takes it. Taken in
    the order the edge listed them (`b, a -> v`), the run followed the sampled call: 47.0% measured
    against the truth's 67.7% (300 items)."""
    text = (
        "name: tie\nnodes:\n  - {id: a, role: assistant, model: sim/llama-8b, temperature: 0}\n"
        "  - {id: b, role: assistant, model: sim/llama-8b}\n  - {id: v, role: vote}\nedges: ['%s -> v']\n"
    )
    questions = [item.question for item in load_sim_task("math", size=40).items]
    for edge in ("a, b", "b, a"):
        graph = Graph(load_spec_text(text % edge), store=None)
        results = asyncio.run(_results(graph, questions))
        greedy = [next(t.answer for t in result.trace if t.node_id == "a") for result in results]
        assert [result.answer for result in results] == greedy, edge
        assert any(result.trace[0].answer != result.trace[1].answer for result in results)  # ties happen


async def _results(graph: Graph, questions: list[str]) -> list[RunResult]:
    return list(await asyncio.gather(*(graph.arun(question) for question in questions)))


def test_a_nodes_latency_counts_from_its_slowest_input() -> None:
    """A fuser of a fast and a slow answer starts when the slow one is in: its fastest input made a
    fan-in look as quick as its quickest branch to every latency budget and objective."""
    items = bank("math", 0, 25)
    graph = SimGraph.build([("assistant", L1), ("assistant", L8), ("fuser", L1)], [(), (), (0, 1)])

    def own(model: str, role: str, inputs: int) -> np.ndarray:
        tokens = call_tokens(items.prompt_tokens, items.completion_tokens, inputs, ROLES[role].length_factor)
        return call_latency(sim_model(model), *tokens)

    slowest_first = np.maximum(own(L1, "assistant", 0), own(L8, "assistant", 0))
    expected = float(np.mean(slowest_first + own(L1, "fuser", 2)))
    assert TruthEngine(items).latency(graph) == pytest.approx(expected)


def test_a_graphs_default_temperature_is_its_nodes() -> None:
    """`defaults: {temperature: 0}` makes every node greedy, as the node's own setting would."""
    text = "name: t\nmodels: {small: {model: sim/llama-1b}}\nnodes:\n  - {id: a, role: assistant, model: small%s}\n"
    by_default = expected_accuracy(load_spec_text(text % "" + "defaults: {temperature: 0}\n"), "sim:math")
    greedy = expected_accuracy(load_spec_text(text % ", temperature: 0"), "sim:math")
    sampled = expected_accuracy(load_spec_text(text % ", temperature: 0.7"), "sim:math")
    assert by_default == greedy != sampled


MIXED = """
name: mixed
models: {small: {model: sim/llama-1b}, gem: {model: sim/gemma-2b}, big: {model: sim/llama-8b}}
nodes:
  - {id: a, role: assistant, model: small}
  - {id: b, role: assistant, model: gem}
  - {id: c, role: critic, model: big}
  - {id: f, role: fuser, model: small}
  - {id: v, role: verifier, model: gem}
edges: ["a -> c", "a, b -> f", "c, f -> v"]
answer_format: number
"""


def test_expected_tokens_and_latency_are_what_runs_record() -> None:
    task = load_sim_task("humaneval", size=12)
    spec = load_spec_text(MIXED)
    graph = Graph(spec, store=None)

    async def run_all() -> list:  # type: ignore[type-arg]
        return list(await asyncio.gather(*(graph.arun(item.question) for item in task.items)))

    results = asyncio.run(run_all())
    engine, sim = engine_for(task), spec_graph(spec)
    tokens = [sum(t.prompt_tokens + t.completion_tokens for t in result.trace) for result in results]
    assert engine.tokens(sim) == pytest.approx(sum(tokens) / len(tokens), rel=1e-12)
    critical = [result.usage.critical_path_s for result in results]
    assert engine.latency(sim) == pytest.approx(sum(critical) / len(critical), rel=1e-9)


def test_a_vote_over_partly_shared_inputs_breaks_ties_by_finishing_order() -> None:
    """Three critics of one model: two read the same answer, one another. They are alike but not
    interchangeable (two are correlated), so their vote's ties follow the finishing order; treating
    every same-labelled input set as interchangeable (ties split evenly) passed every test."""
    l1 = "sim/llama-1b"
    graph = SimGraph.build(
        [("assistant", l1), ("assistant", l1), ("critic", l1), ("critic", l1), ("critic", l1), ("vote", None)],
        [(), (), (0,), (0,), (1,), (2, 3, 4)],
    )
    assert graph.ordered_vote(5)
    items = bank("mmlu", 0, 20)
    exact, is_exact = TruthEngine(items).correct_probability(graph)
    assert is_exact
    np.testing.assert_allclose(exact, brute_force(graph, items), atol=1e-9)
