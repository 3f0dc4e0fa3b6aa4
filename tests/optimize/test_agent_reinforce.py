"""Agent-REINFORCE's learning steps, each on scripted observations (no model is called): the prior
from the single calls, the pilot's lean, the probes and their lean, the incumbent, the agent's graph.

Why: reversing any of these steps (leaning toward the worst model, building the probes on it,
stepping toward the losing shape, never re-measuring the incumbent) passed every other test; the
crowning race hid it on the tests' two-model spaces, where the bad model is always wrong.
"""

from __future__ import annotations

import asyncio
import copy
import json

from agentscale.graphs.spec import ModelSpec
from agentscale.optimize.candidate import CandidateGraph, NodeChoice, resolve_models
from agentscale.optimize.methods.agent_reinforce import AgentReinforce
from agentscale.optimize.objective import Observation
from agentscale.optimize.pilot import single
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.race import RaceOutcome

MODELS = resolve_models(
    {
        "big": ModelSpec(model="sim/llama-8b", params_b=8.0),
        "mid": ModelSpec(model="sim/llama-3b", params_b=3.0),
        "small": ModelSpec(model="sim/llama-1b", params_b=1.0),
    }
)
PROBLEM = SearchProblem(MODELS, ("assistant", "fuser", "vote"), 6, 40.0, 202.0, 275.0)
SINGLES = {"big": 0.5, "mid": 0.8, "small": 0.2}  # the best single call is not the largest model


def _observed(candidate: CandidateGraph, reward: float, n_items: int = 16) -> Observation:
    return Observation(candidate, reward, candidate.compute(MODELS, 202.0, 275.0), 1.0, n_items, reward=reward)


def _probabilities(method: AgentReinforce) -> dict[str, float]:
    return dict(zip(PROBLEM.aliases, method.distribution.model_probs(0), strict=True))


def _after_singles() -> AgentReinforce:
    method = AgentReinforce(PROBLEM, seed=0)
    singles = [_observed(single(alias), reward, 40) for alias, reward in SINGLES.items()]
    method.learn_from_singles(RaceOutcome(singles, [], capped=False))
    return method


def _after_pilot(pilot_rewards: dict[str, float]) -> AgentReinforce:
    method = _after_singles()
    pilot = method.propose(3)
    asyncio.run(method.observe([_observed(c, pilot_rewards[next(iter(c.node_models))], 8) for c in pilot]))
    return method


def test_the_single_calls_lean_the_model_prior_toward_the_better_models() -> None:
    probabilities = _probabilities(_after_singles())
    assert probabilities["mid"] > probabilities["big"] > probabilities["small"]


def test_the_pilot_leans_further_toward_the_model_whose_equal_compute_graph_won() -> None:
    before = _probabilities(_after_singles())
    method = _after_pilot({"big": 0.9, "mid": 0.5, "small": 0.5})
    after = _probabilities(method)
    assert after["big"] > before["big"] and after["mid"] < before["mid"]
    assert method.phase == "probe"  # the pilot is followed by the probes, not the search


def test_the_probes_are_a_wide_and_a_deep_graph_of_the_best_single_model() -> None:
    method = _after_pilot({"big": 0.5, "mid": 0.5, "small": 0.5})
    probes = method.propose(2)
    assert len(probes) == 2 and all(p.node_models == {"mid"} for p in probes)
    wide, deep = probes
    assert wide.edges == {(i, wide.size - 1) for i in range(wide.size - 1)} and wide.size > 2
    assert deep.edges == {(i, i + 1) for i in range(deep.size - 1)} and deep.size > 2
    assert len(method.propose(5)) == 5  # an iteration proposes k graphs, the probes among them


def test_the_winning_probe_shape_gets_the_lean() -> None:
    """After the probes, edges into the output (wide) or along the chain (deep) grow with the shape
    that won, beyond the REINFORCE step that every iteration takes (the same observations seen in
    the search phase)."""
    for winner in ("wide", "deep"):
        method = _after_pilot({"big": 0.5, "mid": 0.5, "small": 0.5})
        wide, deep = method.propose(2)
        rewards = {"wide": 0.9, "deep": 0.2} if winner == "wide" else {"wide": 0.2, "deep": 0.9}
        probed = [_observed(wide, rewards["wide"], 8), _observed(deep, rewards["deep"], 8)]
        searching = copy.deepcopy(method)
        searching.phase = "search"
        before = method.distribution.edge_probs().copy()
        for each in (method, searching):
            asyncio.run(each.observe(probed))
        assert method.phase == "search"
        lean = method.distribution.edge_probs() - searching.distribution.edge_probs()
        into_the_output, along_the_chain = lean[0, wide.size - 1], lean[0, 1]
        assert (into_the_output > 0 > along_the_chain) if winner == "wide" else (into_the_output < 0 < along_the_chain)
        moved = method.distribution.edge_probs() - before
        assert (moved[0, wide.size - 1] > 0) == (winner == "wide")


def test_each_search_iteration_measures_the_incumbent_again_on_new_items() -> None:
    method = _after_pilot({"big": 0.5, "mid": 0.9, "small": 0.5})
    asyncio.run(method.observe([_observed(p, 0.5, 8) for p in method.propose(2)]))
    incumbent = next(o.candidate for o in method.history if o.reward == 0.9)
    for _ in range(2):
        proposed = method.propose(4)
        assert len(proposed) == 4 and proposed[0].canonical_key == incumbent.canonical_key
        asyncio.run(method.observe([_observed(c, 0.1, 8) for c in proposed[1:]]))


def test_a_graph_the_agent_proposes_is_measured_in_the_next_iteration() -> None:
    """The module's promise; the agent's valid graph was parsed, checked and then never run."""
    nodes = [{"role": "assistant", "model": "mid"}] * 2 + [{"role": "fuser", "model": "mid"}]
    reply = json.dumps({"models": {"mid": 0.6}, "graph": {"nodes": nodes, "edges": [[0, 2], [1, 2]]}})
    asked: list[str] = []

    async def agent(system: str, user: str) -> str:
        asked.append(user)
        return reply

    method = AgentReinforce(PROBLEM, seed=0, agent=agent)
    method.learn_from_singles(RaceOutcome([_observed(single(a), r, 40) for a, r in SINGLES.items()], [], capped=False))
    for _ in range(2):  # the pilot, then the probes: the agent is asked after the probes
        asyncio.run(method.observe([_observed(c, 0.5, 8) for c in method.propose(2)]))
    assert len(asked) == 1
    fused = CandidateGraph(
        (NodeChoice("assistant", "mid"), NodeChoice("assistant", "mid"), NodeChoice("fuser", "mid")),
        frozenset({(0, 2), (1, 2)}),
    )
    keys = [c.canonical_key for c in method.propose(3)]
    assert fused.canonical_key in keys and len(keys) == len(set(keys)) >= 3
