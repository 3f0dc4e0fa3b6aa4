"""The search loop shared by `agentscale optimize` and the optimizer benchmark.

propose K graphs → evaluate them side by side (on the iteration's minibatch) → let the method
observe → repeat, stopping after `iterations`, when `evaluate` raises `StopSearch` (e.g. the spend
cap), or when `patience` rounds in a row propose nothing new (converged).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from agentscale.errors import AgentScaleError
from agentscale.optimize._side_by_side import side_by_side
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.methods.base import SearchMethod
from agentscale.optimize.objective import Observation

Evaluate = Callable[[CandidateGraph, int], Awaitable[Observation]]
"""`await evaluate(candidate, iteration) -> Observation`."""


class StopSearch(AgentScaleError):
    """Raised by an evaluator to end the search early (the reason becomes `stopped_reason`)."""


@dataclass
class SearchOutcome:
    history: list[Observation] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)  # (evaluations, best reward so far)
    stopped_reason: str = ""


async def run_search(
    method: SearchMethod,
    evaluate: Evaluate,
    *,
    iterations: int,
    samples: int,
    patience: int = 3,
    on_iteration: Callable[[int, list[Observation]], None] | None = None,
) -> SearchOutcome:
    outcome = SearchOutcome(stopped_reason=f"finished {iterations} iterations")
    seen: set[str] = set()
    stale = 0
    for iteration in range(iterations):
        if on_iteration is not None:
            on_iteration(iteration, outcome.history)
        proposed = method.propose(samples)
        keys = [c.canonical_key for c in proposed]
        distinct = [c for i, c in enumerate(proposed) if keys.index(keys[i]) == i]  # each graph's first proposal
        observations, refused = await side_by_side([evaluate(c, iteration) for c in distinct], StopSearch)
        for observation in observations:
            outcome.history.append(observation)
            outcome.curve.append((len(outcome.history), max(o.reward for o in outcome.history)))
        observed = _per_proposal(proposed, observations)
        if refused is not None:
            outcome.stopped_reason = str(refused)
            if observed:
                await method.observe(observed, more=False)
            break
        await method.observe(observed, more=iteration < iterations - 1)
        new = {o.candidate.canonical_key for o in observations} - seen
        seen |= new
        stale = 0 if new else stale + 1
        if stale >= patience:
            outcome.stopped_reason = f"converged: no new graph in {patience} iterations"
            break
    return outcome


def _per_proposal(proposed: list[CandidateGraph], observations: list[Observation]) -> list[Observation]:
    """One observation per proposal, in the method's own numbering of it: a graph proposed twice in a
    round is evaluated once, on the round's minibatch, and both proposals observe that evaluation.

    Why: a method sampling a collapsed distribution proposes the same graph several times in a round
    (Agent-REINFORCE's incumbent among its samples: 26 of 66 evaluations of a humaneval-b8 search
    repeated one of the same round); each repeat was a trial of its own, with the cache a replay of the
    same verdicts, without it the same calls paid again (400 of 1,116). The method still learns from
    every sample it drew, so REINFORCE's update is unchanged."""
    measured = {o.candidate.canonical_key: o for o in observations}
    return [replace(measured[c.canonical_key], candidate=c) for c in proposed if c.canonical_key in measured]
