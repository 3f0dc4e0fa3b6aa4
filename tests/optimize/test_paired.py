"""Paired differences: the interval the report prints agrees with the test it prints beside it."""

from __future__ import annotations

import pytest

from agentscale.evaluate.stats import mcnemar_interval
from agentscale.optimize.paired import paired_difference


def test_an_advantage_takes_the_exact_interval_and_a_reward_the_same_one_scaled_and_offset() -> None:
    """11 items right under the crowned graph only and 3 under the single, of 60: the normal interval
    excluded 0 while the exact McNemar p was 0.057. A reward's interval (accuracy weighed, a cost gap)
    was the normal one too, beside that p (`optimize --json`, a statistics audit): it is the exact one
    mapped like the per-item differences, and `accuracy_ci95` the one the p-value agrees with."""
    first = {f"i{k}": k < 11 or 14 <= k < 40 for k in range(60)}
    second = {f"i{k}": 11 <= k < 40 for k in range(60)}
    outcomes = paired_difference(first, second)
    assert (outcomes.only_first, outcomes.only_second) == (11, 3) and outcomes.p_value > 0.05
    assert outcomes.ci95 == mcnemar_interval(11, 3, 60) and outcomes.ci95[0] < 0
    rewards = paired_difference(first, second, offset=-0.01, scale=2.0)
    low, high = mcnemar_interval(11, 3, 60)
    assert rewards.ci95 == pytest.approx((2 * low - 0.01, 2 * high - 0.01)) and rewards.ci95[0] < 0
    assert rewards.to_dict()["accuracy_ci95"] == [low, high] and rewards.mean == pytest.approx(2 * 8 / 60 - 0.01)


def test_no_shared_item_is_no_interval() -> None:
    """A zero standard error when nothing is shared (a mutation audit's) would print an interval of
    zero width for a comparison made on no item."""
    difference = paired_difference({"a": True}, {"b": True}, offset=0.1)
    assert difference.n == 0 and not difference.separated(0.0)
    assert difference.ci95 == (float("-inf"), float("inf"))
