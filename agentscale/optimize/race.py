"""Racing graphs on the train split: every graph still in the race answers the same growing prefix
of the split, a quarter more each step, and after each step a graph leaves only when the leader
beats it on the items they share by more than one item plus `RACE_Z` standard errors of the paired
difference (a fixed halving dropped good graphs on 15 items' noise).

The runner races twice with this one procedure: the single calls before the search (a model far
behind the best stops early, its partial score still informs the model prior) and the crowning pool
after it. A step evaluates only the items new to it, the graphs of a step side by side, and a
graph's steps are pooled into one observation, so no item is asked twice (with the response cache
off too); when the spend cap stops a step, what that step finished stands.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from agentscale.optimize._side_by_side import side_by_side
from agentscale.optimize.candidate import CandidateGraph
from agentscale.optimize.crowning import penalty
from agentscale.optimize.objective import Observation, pooled
from agentscale.optimize.paired import paired_difference
from agentscale.optimize.trials import SpendCapReached
from agentscale.tasks import TaskItem

RACE_Z = 1.0  # how clearly the leader must beat a graph on the shared items before it leaves the race
RACE_STEPS = 4  # the race walks the train split in this many equal steps

Evaluate = Callable[[CandidateGraph, list[TaskItem]], Awaitable[Observation]]
OnStep = Callable[[int, int, int, int], None]  # graphs racing, first and last item of the step, split size
Rescore = Callable[[Observation], Observation]  # the reward again, on the run's current latency reference


@dataclass
class RaceOutcome:
    """Who was still racing when the race ended and who left it, each graph's race steps pooled into
    one observation (a graph the spend cap stopped before its first step is in neither)."""

    finished: list[Observation]  # on the whole split, unless `capped`: then on the items answered so far
    behind: list[Observation]  # left the race early, on the prefix they answered
    capped: bool

    @property
    def raced(self) -> list[Observation]:
        """Every graph the race scored, finalists first."""
        return self.finished + self.behind


def race_steps(train: int) -> list[int]:
    """How many train items (a prefix) the survivors have answered after each step of the race."""
    return sorted({max(1, -(-train * step // RACE_STEPS)) for step in range(1, RACE_STEPS + 1)})


def still_racing(observations: list[Observation], *, accuracy_weight: float) -> list[Observation]:
    """The graphs the leader (best mean reward on the shared items) does not clearly beat, leader
    included."""
    if not observations:
        return []
    leader = max(observations, key=lambda o: (o.reward, -o.compute))
    kept = []
    for other in observations:
        gap = penalty(other, accuracy_weight) - penalty(leader, accuracy_weight)
        difference = paired_difference(leader.outcomes, other.outcomes, offset=gap, scale=accuracy_weight)
        if other is leader or not difference.separated(RACE_Z):
            kept.append(other)
    return kept


async def race(
    candidates: list[CandidateGraph],
    order: list[TaskItem],
    evaluate: Evaluate,
    *,
    accuracy_weight: float,
    on_step: OnStep | None = None,
    rescore: Rescore | None = None,
) -> RaceOutcome:
    """Race `candidates` on the prefixes of `order`; `evaluate` scores one graph on some items and
    raises `SpendCapReached` when the spend cap would be crossed; `on_step` hears of each step as it
    starts (a step of a real-model race can take twenty minutes); `rescore` gives each pooled graph
    its reward on one latency reference before they are compared (steps evaluated at different times
    were scored on the reference of their time)."""
    again = rescore or (lambda observation: observation)
    racing, answered = list(candidates), 0
    last: list[Observation] = []
    behind: list[Observation] = []
    for items in race_steps(len(order)):
        if on_step is not None:
            on_step(len(racing), answered + 1, items, len(order))
        steps, stopped = await side_by_side(
            [evaluate(candidate, order[answered:items]) for candidate in racing], SpendCapReached
        )
        capped = stopped is not None
        stepped = {o.candidate.canonical_key for o in steps}
        scored = [
            again(o) for o in pooled([o for o in last if o.candidate.canonical_key in stepped] + steps, accuracy_weight)
        ]
        if capped:  # what was measured stands; those the cap reached first have one step fewer
            waiting = [again(o) for o in last if o.candidate.canonical_key not in stepped]
            return RaceOutcome(scored + waiting, behind, capped=True)
        last = still_racing(scored, accuracy_weight=accuracy_weight)
        kept = {id(o) for o in last}
        behind += [o for o in scored if id(o) not in kept]
        racing, answered = [o.candidate for o in last], items
    return RaceOutcome(last, behind, capped=False)
