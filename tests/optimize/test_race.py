"""Racing graphs on the train split, with scripted per-item verdicts (no model is called)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from agentscale.optimize.candidate import CandidateGraph, NodeChoice
from agentscale.optimize.objective import Observation
from agentscale.optimize.race import race, race_steps, still_racing
from agentscale.optimize.trials import SpendCapReached
from agentscale.tasks import TaskItem

TRAIN = [f"q{i}" for i in range(60)]


def voted(model: str, n: int) -> CandidateGraph:
    nodes = (*(NodeChoice("assistant", model) for _ in range(n)), NodeChoice("vote", None))
    return CandidateGraph(nodes, frozenset((i, n) for i in range(n)))


def observed(candidate: CandidateGraph, right: set[str], items: list[str]) -> Observation:
    outcomes = {item: item in right for item in items}
    accuracy = sum(outcomes.values()) / len(items)
    return Observation(candidate, accuracy, 1.0, 0.0, len(items), reward=accuracy, outcomes=outcomes)


class ScriptedEvaluations:
    """Each graph is right on a fixed set of items; records what it was asked, and raises the spend
    cap's error once `cap` evaluations were made."""

    def __init__(self, right: dict[str, set[str]], cap: int | None = None) -> None:
        self.right, self.cap = right, cap
        self.asked: list[tuple[str, list[str]]] = []

    async def __call__(self, candidate: CandidateGraph, items: list[TaskItem]) -> Observation:
        if self.cap is not None and len(self.asked) >= self.cap:
            raise SpendCapReached("max_spend.calls would be crossed")
        model = candidate.nodes[0].model or ""
        ids = [item.id for item in items]
        self.asked.append((model, ids))
        return observed(candidate, self.right[model], ids)


ITEMS = [TaskItem(id=item, question=item, reference="") for item in TRAIN[:20]]
GRAPHS = [voted(model, 3) for model in ("good", "close", "bad")]
RIGHT = {"good": set(TRAIN[:15]), "close": set(TRAIN[:13]), "bad": set()}


def test_the_race_drops_only_graphs_the_leader_clearly_beats_on_shared_items() -> None:
    assert race_steps(60) == [15, 30, 45, 60] and race_steps(3) == [1, 2, 3] and race_steps(1) == [1]
    prefix = TRAIN[:15]
    leader = observed(voted("big", 3), set(prefix[:12]), prefix)  # 12/15
    close = observed(voted("big", 2), set(prefix[:10]), prefix)  # 10/15: noise at 15 items
    beaten = observed(voted("small", 3), set(prefix[12:]), prefix)  # 3/15, wrong where the leader is right
    kept = still_racing([close, beaten, leader], accuracy_weight=1.0)
    assert kept == [close, leader]


def test_two_items_of_two_are_not_enough_to_leave_the_race() -> None:
    """When every shared item differs the same way the per-item differences have no spread, and a
    graph left on "more than one item" alone: on 2 items of 2 (exact McNemar p 0.5) at a train split
    of 8 (a statistics audit). The standard error is McNemar's, under the null."""
    items = TRAIN[:2]
    leader, other = observed(voted("big", 3), set(items), items), observed(voted("small", 3), set(), items)
    assert still_racing([leader, other], accuracy_weight=1.0) == [leader, other]
    many = TRAIN[:30]  # 20 of 30 items right under the leader only: it leaves
    assert still_racing(
        [leader := observed(voted("big", 3), set(many[:20]), many), observed(voted("small", 3), set(), many)],
        accuracy_weight=1.0,
    ) == [leader]


def test_between_equal_rewards_the_cheaper_graph_leads_the_race() -> None:
    """Graphs leave when the leader clearly beats them; of two graphs with the same reward the cheaper
    leads (the one crowning would keep). Led by the dearer one, whose right answers fall on other
    items, a graph the cheaper one clearly beats stayed in the race, paid for to the end."""
    prefix = TRAIN[:15]
    cheap = observed(voted("cheap", 3), set(prefix[:10]), prefix)  # 10/15
    dear = replace(observed(voted("dear", 3), set(prefix[5:]), prefix), compute=2.0)  # 10/15, other items
    behind = observed(voted("behind", 3), set(prefix[:7]), prefix)  # 7/15, within the cheaper's right answers
    for order in ([behind, dear, cheap], [cheap, behind, dear]):
        assert still_racing(order, accuracy_weight=1.0) == [o for o in order if o is not behind]


def test_a_race_asks_each_item_once_and_pools_a_graphs_steps() -> None:
    evaluations = ScriptedEvaluations(RIGHT)
    outcome = asyncio.run(race(GRAPHS, ITEMS, evaluations, accuracy_weight=1.0))
    assert not outcome.capped
    assert [o.candidate.nodes[0].model for o in outcome.finished] == ["good", "close"]
    assert all(o.n_items == 20 and len(o.outcomes) == 20 for o in outcome.finished)
    assert outcome.finished[0].accuracy == 15 / 20
    (bad,) = outcome.behind  # wrong on the 5 items the others got right: it leaves after the first step
    assert bad.candidate.nodes[0].model == "bad" and bad.n_items == 5
    for model in ("good", "close"):
        asked = [item for who, items in evaluations.asked if who == model for item in items]
        assert asked == TRAIN[:20]  # every item once, in the split's order


def test_a_spend_cap_mid_step_keeps_what_that_step_measured() -> None:
    # step 1: three evaluations (bad leaves); step 2: good answers items 5-9, then the cap
    evaluations = ScriptedEvaluations(RIGHT, cap=4)
    outcome = asyncio.run(race(GRAPHS, ITEMS, evaluations, accuracy_weight=1.0))
    assert outcome.capped
    answered = {o.candidate.nodes[0].model: o.n_items for o in outcome.finished}
    assert answered == {"good": 10, "close": 5}  # still racing, however far each got
    assert [o.candidate.nodes[0].model for o in outcome.behind] == ["bad"]


def test_race_steps_are_ceiling_quarters() -> None:
    """Floor division in `race_steps` (a mutation audit's): a quarter of 10 items is 3, not 2."""
    assert race_steps(10) == [3, 5, 8, 10]
    assert race_steps(5) == [2, 3, 4, 5]


def test_the_race_compares_graphs_on_their_rescored_rewards() -> None:
    """`rescore` ignored (a mutation audit's): the graphs' rewards are the run's current ones (its
    latency reference) before they are compared and returned; here "good" is slow, priced 0.5."""

    def rescore(o: Observation) -> Observation:
        return replace(o, reward=o.accuracy - (0.5 if o.candidate.nodes[0].model == "good" else 0.0))

    graphs = [voted("good", 3), voted("close", 3)]
    outcome = asyncio.run(race(graphs, ITEMS, ScriptedEvaluations(RIGHT), accuracy_weight=1.0, rescore=rescore))
    (good,) = [o for o in outcome.raced if o.candidate.nodes[0].model == "good"]
    assert good.reward == pytest.approx(good.accuracy - 0.5)
    assert [o.candidate.nodes[0].model for o in outcome.finished] == ["close"]
    assert [o.candidate.nodes[0].model for o in outcome.behind] == ["good"]


def test_graphs_a_spend_cap_cut_off_come_back_rescored_too() -> None:
    """Those still waiting for the step the cap stopped were returned with the reward of an earlier
    step's latency reference (a mutation audit's), and the crowning compared them so with graphs
    rescored on the current one. Here the reference moves with every evaluation."""
    evaluations = ScriptedEvaluations(RIGHT, cap=4)

    def rescore(o: Observation) -> Observation:  # the penalty of the run's reference now
        return replace(o, reward=o.accuracy - 0.01 * len(evaluations.asked))

    outcome = asyncio.run(race(GRAPHS, ITEMS, evaluations, accuracy_weight=1.0, rescore=rescore))
    assert outcome.capped and {o.candidate.nodes[0].model for o in outcome.finished} == {"good", "close"}
    assert all(o.reward == pytest.approx(o.accuracy - 0.04) for o in outcome.finished)
