"""`--dry-run`: what a search would spend, projected before any call is made.

Counts every evaluation the run will make (pilot, search, crowning, baselines, test) and the items
each answers; calls and tokens per item come from 256 graphs drawn from the initial distribution
(tokens per model node: the task's mean prompt plus one mean answer per input, plus one answer). It
ignores the response cache, so for a fresh run it is an upper bound in calls and close in tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentscale.models.cost import call_usd
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.distribution import GraphDistribution
from agentscale.optimize.methods import METHODS
from agentscale.optimize.problem import SearchProblem
from agentscale.optimize.runner import CROWN_CANDIDATES
from agentscale.optimize.space import SpaceSpec

DRAWS = 256


def _per_item(problem: SearchProblem, candidate: CandidateGraph) -> tuple[int, float, float | None]:
    calls, tokens = 0, 0.0
    usd: float | None = 0.0
    prompt, answer = problem.mean_prompt_tokens, problem.mean_completion_tokens
    for index, node in enumerate(candidate.nodes):
        if node.model is None:
            continue
        node_prompt = prompt + len(candidate.predecessors[index]) * answer
        calls += 1
        tokens += node_prompt + answer
        price = call_usd(problem.models[node.model], round(node_prompt), round(answer))
        usd = None if usd is None or price is None else usd + price
    return calls, tokens, usd


def project(space: SpaceSpec, problem: SearchProblem, method: str, seed: int, train: int, test: int) -> dict[str, Any]:
    settings = space.optimizer
    rng = np.random.default_rng(seed)
    draws = [GraphDistribution(problem).sample(rng) for _ in range(DRAWS)]
    per_item = [_per_item(problem, d) for d in draws]
    calls = float(np.mean([p[0] for p in per_item]))
    tokens = float(np.mean([p[1] for p in per_item]))
    prices = [p[2] for p in per_item]
    usd = None if any(p is None for p in prices) else float(np.mean([p or 0.0 for p in prices]))

    instance = METHODS[method](problem, seed=seed, agent=None) if not METHODS[method].needs_agent else None
    pilot = instance.propose(settings.samples) if instance is not None and method == "agent-reinforce" else []
    minibatch = min(settings.minibatch, train)
    search_evals = settings.iterations * settings.samples + len(pilot)
    items = search_evals * minibatch + CROWN_CANDIDATES * train + len(problem.aliases) * train + 3 * test
    baseline_items = len(problem.aliases) * train
    graph_items = items - baseline_items
    single_calls = baseline_items  # one call per item
    single_tokens = baseline_items * (problem.mean_prompt_tokens + problem.mean_completion_tokens)
    return {
        "evaluations": search_evals + CROWN_CANDIDATES + len(problem.aliases) + 3,
        "items_answered": items,
        "calls": round(graph_items * calls + single_calls),
        "tokens": round(graph_items * tokens + single_tokens),
        "usd": None if usd is None else graph_items * usd,
        "note": "projected without the response cache (an upper bound on calls for a fresh run)",
    }
