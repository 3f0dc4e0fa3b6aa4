"""The `llm` method (textual feedback only): the graph its agent proposes is what it measures next."""

from __future__ import annotations

import asyncio
import json

from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.methods.llm_optimizer import LLMOptimizer
from agentscale.optimize.pilot import single
from tests.optimize.test_agent_reinforce import PROBLEM, _observed

FUSED = CandidateGraph(
    (NodeChoice("assistant", "mid"), NodeChoice("assistant", "mid"), NodeChoice("fuser", "mid")),
    frozenset({(0, 2), (1, 2)}),
)


def test_the_agents_graph_leads_the_next_iteration_and_a_bad_reply_changes_nothing() -> None:
    """Its proposed graph is the method's main output: dropped, the method was random sampling with
    a drifting prior."""
    nodes = [{"role": "assistant", "model": "mid"}] * 2 + [{"role": "fuser", "model": "mid"}]
    replies = iter([json.dumps({"graph": {"nodes": nodes, "edges": [[0, 2], [1, 2]]}}), "no JSON here"])

    async def agent(system: str, user: str) -> str:
        return next(replies)

    method = LLMOptimizer(PROBLEM, seed=0, agent=agent)
    asyncio.run(method.observe([_observed(single("big"), 0.5), _observed(single("small"), 0.2)]))
    proposed = method.propose(3)
    assert proposed[0].canonical_key == FUSED.canonical_key and len(proposed) == 3
    before = method.distribution.state()
    asyncio.run(method.observe([_observed(c, 0.5) for c in proposed]))
    assert method.distribution.state() == before and method.proposed == []


def test_a_step_without_a_usable_reply_is_called_random_search() -> None:
    """`llm` has no update of its own: the warning said such steps "went on with the method's own
    update" (the search audit), where they sampled the unchanged distribution."""

    async def agent(system: str, user: str) -> str:
        return "no JSON here"

    method = LLMOptimizer(PROBLEM, seed=0, agent=agent)
    asyncio.run(method.observe([_observed(single("big"), 0.5)]))
    warning = method.agent_warning()
    assert warning is not None and warning.startswith("the feedback agent gave nothing usable in 1 step(s), which ")
    assert "as random search does" in warning and "own update" not in warning
