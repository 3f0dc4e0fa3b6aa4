"""Textual feedback: lenient parsing, validation, clamping; injected output never escapes the space."""

from __future__ import annotations

import numpy as np

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.feedback import InsightRules, apply_agent_update, parse_agent_update
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import single
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


def test_a_reply_cut_at_its_max_tokens_gives_the_fields_that_closed_before_the_cut() -> None:
    """The real 0.5B agent's replies ran to its 1,024 tokens repeating its proposed graph's nodes;
    the first complete object inside (its `size` probabilities) was taken for the update and refused
    ("Extra inputs are not permitted at ('1',)"), its complete probabilities lost and the cut unsaid."""
    node = '{"role": "assistant", "model": "small"}, '
    real = '{"size": {"1": 0.17, "3": 0.48}, "models": {"small": 0.17}, "graph": {"nodes": [' + node * 60 + '{"ro'
    update, why = parse_agent_update(real)
    assert why is None and update is not None
    assert (update.size, update.models, update.graph) == ({1: 0.17, 3: 0.48}, {"small": 0.17}, None)
    for cut, kept in (
        ('{"size": {"3": 0.5}, "models": ', {3: 0.5}),  # the cut right after a key
        ('{"size": {"3": 0.5}, "graph": tru', {3: 0.5}),  # inside a literal
        ('```json\n{"size": {"3": 0.5}, "mod', {3: 0.5}),  # inside a key, after a fence
    ):
        update, why = parse_agent_update(cut)
        assert why is None and update is not None and update.size == kept, cut
    update, why = parse_agent_update('{"size": {"3": 0.5')  # nothing closed before the cut
    assert update is None and why is not None and "stopped before its JSON object closed" in why
    # not cut but broken: as before, no update from a fragment of it
    update, why = parse_agent_update('{"size": {"3": 0.5}, "x": [1, 2]] }')
    assert update is None and why is not None and "stopped before" not in why
    update, why = parse_agent_update('Use {fewer} nodes. {"models": {"small": 0.9}}')  # a brace of prose first
    assert why is None and update is not None and update.models == {"small": 0.9}


def test_a_malformed_field_is_dropped_alone_and_a_key_beyond_the_update_refuses_the_reply() -> None:
    """The real 0.5B agent gave `graph.edges` as [i, j, p] triples beside valid probabilities, and
    the whole reply was refused; a key the update does not have (a budget, a field inside the graph)
    still refuses it whole: it asks for what the agent may not change."""
    update, why = parse_agent_update(
        '{"size": {"2": 0.5}, "edges": [[0, 1, 0.7]], '
        '"graph": {"nodes": [{"role": "assistant", "model": "big"}], "edges": [[0, 1, 0.5]]}}'
    )
    assert update is not None and (update.size, update.edges, update.graph) == ({2: 0.5}, [(0, 1, 0.7)], None)
    assert why is not None and why.startswith("graph dropped (invalid update: Tuple should have at most 2 items")
    for refused in ('{"size": {"2": 0.5}, "graph": {"nodes": [{"role": "assistant"}], "budget": 1}}', '{"size": []}'):
        assert parse_agent_update(refused)[0] is None, refused


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
    """A rejected proposal says why (its log line once read "invalid or over budget", either)."""
    over = '{"graph": {"nodes": [{"role": "assistant", "model": "big"}, {"role": "assistant", "model": "big"}, {"role": "vote"}], "edges": [[0, 2], [1, 2]]}}'
    update, _ = parse_agent_update(over)
    assert update is not None
    proposed, problems = apply_agent_update(distribution(budget=10.0), update)
    assert problems == ["proposed graph rejected: compute 20.54 over budget.compute=10"] and proposed is None
    small = '{"role": "assistant", "model": "small"}'
    five = '{"graph": {"nodes": [' + ", ".join([small] * 5) + '], "edges": [[0, 4], [1, 4], [2, 4], [3, 4]]}}'
    proposed, problems = apply_agent_update(distribution(budget=100.0), parse_agent_update(five)[0])  # type: ignore[arg-type]
    assert problems == ["proposed graph rejected: 5 nodes, over max_nodes=4"] and proposed is None
    outside = '{"graph": {"nodes": [{"role": "boss", "model": "small"}]}}'
    proposed, problems = apply_agent_update(distribution(), parse_agent_update(outside)[0])  # type: ignore[arg-type]
    assert proposed is None and "outside the space" in problems[0]
    fits = '{"graph": {"nodes": [{"role": "assistant", "model": "small"}, {"role": "assistant", "model": "small"}, {"role": "fuser", "model": "small"}]}}'
    proposed, problems = apply_agent_update(distribution(), parse_agent_update(fits)[0])  # type: ignore[arg-type]
    assert proposed is not None and problems == [] and proposed.predecessors[2] == (0, 1)


def test_a_reply_nested_beyond_the_json_parser_is_no_update() -> None:
    update, why = parse_agent_update('{"size": ' + "[" * 100_000)
    assert update is None and why


def _scored(candidate: CandidateGraph, reward: float) -> Observation:
    return Observation(candidate, reward, 1.0, 1.0, 8, reward=reward)


FUSED_SMALL = CandidateGraph(
    (NodeChoice("assistant", "small"), NodeChoice("assistant", "small"), NodeChoice("fuser", "small")),
    frozenset({(0, 2), (1, 2)}),
)


def test_the_rules_lean_toward_the_model_whose_graphs_scored_better() -> None:
    """The default feedback (no agent_model): insight 1 as a rule, every iteration."""
    dist = distribution()
    history = [_scored(single("big"), 0.9), _scored(single("small"), 0.1)]
    InsightRules().apply(dist, history, history)
    big, small = (dist.model_probs(0)[dist.problem.aliases.index(alias)] for alias in ("big", "small"))
    assert big > 0.6 > small


def test_the_rules_step_toward_the_elite_graph_not_the_luckiest_minibatch() -> None:
    """The elite (the crowning's best estimate) is a fused graph; one minibatch made a single call
    look best: the edges into the fuser grow."""
    dist = distribution()
    before = dist.edge_probs()[0, 2]
    history = [_scored(single("big"), 1.0), _scored(FUSED_SMALL, 0.6)]
    InsightRules().apply(dist, history, history, elite=FUSED_SMALL)
    assert dist.edge_probs()[0, 2] > before + 0.05


def test_two_iterations_without_a_better_graph_flatten_the_distribution_once() -> None:
    """Stagnation: after two iterations that found nothing better every logit shrinks by 0.7 (to
    explore again), not after one, and the count starts over."""
    dist = distribution()
    dist.size_logits[:] = [1.0, 2.0, 3.0, 4.0]
    history = [_scored(single("small"), 0.5)]  # one model, one size: insights 1-2 have nothing to say
    better_batch = [_scored(single("small"), 1.0)]  # above the history's best: no step toward it
    rules = InsightRules()
    seen = []
    for _ in range(5):
        rules.apply(dist, history, better_batch)
        seen.append(dist.size_logits.copy())
    np.testing.assert_allclose(seen, [[1, 2, 3, 4]] * 2 + [[0.7, 1.4, 2.1, 2.8]] * 2 + [[0.49, 0.98, 1.47, 1.96]])


def test_an_agent_edge_to_the_slot_past_the_last_node_is_refused_not_a_crash() -> None:
    """Slots run 0..max_nodes-1: an edge to slot max_nodes would index past the edge matrix and end
    the whole paid run with an IndexError."""
    dist = distribution()
    before = dist.state()
    update, _ = parse_agent_update('{"edges": [[0, 4, 0.5], [-1, 2, 0.5]]}')
    assert update is not None
    proposed, problems = apply_agent_update(dist, update)
    assert proposed is None and len(problems) == 2 and "edge 0->4" in problems[0]
    assert dist.state() == before


async def test_a_reply_of_which_every_part_is_rejected_is_a_step_that_gave_nothing_usable() -> None:
    """An unknown model and an over-budget graph were only log lines ("rejected in part"): the run's
    warning "the feedback agent gave nothing usable in N step(s)" left such a step out (the Pareto/llm
    walk's F4). A reply with one usable part is still used."""
    from agentscale.optimize.feedback import ask_agent

    big = '{"role": "assistant", "model": "big"}'
    replies = {
        "nothing": '{"models": {"gpt-9": 0.9}, "graph": {"nodes": [' + ", ".join([big] * 4) + "]}}",
        "something": '{"models": {"gpt-9": 0.9, "small": 0.8}}',
    }
    for kind, reply in replies.items():

        async def agent(system: str, user: str, reply: str = reply) -> str:
            return reply

        unused: list[str] = []
        proposed = await ask_agent(agent, distribution(budget=10.0), [], insights=False, unused=unused)
        assert proposed is None
        if kind == "nothing":
            assert unused == ["every part of its reply was rejected: unknown model 'gpt-9'"]
        else:
            assert unused == []
