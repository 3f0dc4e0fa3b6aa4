"""Report statistics: Wilson intervals, percentiles, and the paired McNemar test and interval."""

from __future__ import annotations

import math

import pytest

from agentscale.evaluate.stats import (
    format_p,
    mcnemar_exact,
    mcnemar_interval,
    paired_counts,
    percentile,
    wilson_interval,
)
from agentscale.optimize.paired import paired_difference
from agentscale.optimize.report import advantage_sentence


def test_mcnemar_matches_the_binomial_tail() -> None:
    # 10 discordant items split 9/1: P(X <= 1 | n=10, p=1/2) = 11/1024, two-sided 22/1024
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(1, 9) == mcnemar_exact(9, 1)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)


def test_paired_counts_use_only_shared_items() -> None:
    first = {"a": True, "b": True, "c": False, "d": True}
    second = {"a": True, "b": False, "c": True, "e": False}
    assert paired_counts(first, second) == (3, 1, 1)


def test_the_paired_interval_excludes_zero_exactly_when_mcnemar_rejects() -> None:
    """The report printed "+13.3 points [+1.5, +25.2]" (a normal interval, excluding 0) beside "exact
    McNemar p=0.0574" (not significant) for 11 against 3 discordant items of 60."""
    low, high = mcnemar_interval(11, 3, 60)
    assert low < 0 < high and mcnemar_exact(11, 3) > 0.05
    for only_first in range(31):
        for only_second in range(31):
            low, high = mcnemar_interval(only_first, only_second, 80)
            assert low <= (only_first - only_second) / 80 <= high
            assert (low > 0 or high < 0) == (mcnemar_exact(only_first, only_second) < 0.05)
    # no discordant item: not [0, 0] (exactly equal however few the items; a review) but within the
    # share of discordant items the exact bound allows, 1 - 0.025^(1/n)
    assert mcnemar_interval(0, 0, 10) == pytest.approx((-(1 - 0.025**0.1), 1 - 0.025**0.1))
    assert mcnemar_interval(0, 0, 100)[1] == pytest.approx(0.0362, abs=1e-4)
    # 5 discordant items of 10, all the first's: the difference is at most the discordant share, whose
    # exact upper bound from 5 of 10 is 0.81 (it read 0.5: the observed share taken as known)
    assert mcnemar_interval(5, 0, 10)[1] == pytest.approx(0.8129, abs=1e-4)
    assert mcnemar_interval(1, 0, 100)[1] > mcnemar_interval(0, 0, 100)[1]  # one item more is no narrower


def _coverage(n: int, discordant: float, won: float) -> float:
    """The exact probability that the interval holds the true difference when each of `n` items is
    discordant with chance `discordant`, won by the first with chance `won` (a trinomial sum)."""
    truth = discordant * (2 * won - 1)
    total = 0.0
    for first in range(n + 1):
        for second in range(n + 1 - first if won < 1 else 1):  # none won by the second when won is 1
            low, high = mcnemar_interval(first, second, n)
            if low <= truth <= high:
                ways = math.comb(n, first) * math.comb(n - first, second)
                total += (
                    ways
                    * (discordant * won) ** first
                    * (discordant * (1 - won)) ** second
                    * (1 - discordant) ** (n - first - second)
                )
    return total


@pytest.mark.parametrize(("n", "discordant", "won"), [(200, 0.1, 1.0), (40, 0.3, 1.0), (30, 0.3, 0.8)])
def test_the_paired_interval_holds_the_true_difference_at_least_95_percent_of_the_time(
    n: int, discordant: float, won: float
) -> None:
    """When one graph wins every discordant item, an interval that takes the observed discordant share
    as known held the true difference in 47% of draws at 200 items (10% discordant), 55% at 40 items
    (30%), and 89% at 30 items when it won 80% of them: the report's advantage over the best single
    call read as surer than it was."""
    assert _coverage(n, discordant, won) >= 0.95


def test_the_wilson_interval_of_no_items_is_everything_rather_than_a_crash() -> None:
    """A task or arm with no scored item (every call refused by its budget) still gets a report line:
    the interval of 0/0 is the whole range, not a ZeroDivisionError that loses the report."""
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_the_wilson_interval_matches_its_formula_and_is_exact_at_the_ends() -> None:
    """8/10 right reads [49.0%, 94.3%]; 0/n and n/n must end at exactly 0 and 1, since `--json`
    printed 5.55e-17 as the lower bound of 0/3 and 0.9999999999999999 as the upper bound of 10/10."""
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.490162, abs=1e-6) and high == pytest.approx(0.943318, abs=1e-6)
    for n in (3, 6, 7, 10, 12, 13, 25):
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(0, n)[1] < 1.0
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(n, n)[0] > 0.0


def test_percentiles_interpolate_between_the_sorted_values() -> None:
    """Latency p50/p95 in reports: the median of 1..5 is 3, p25 of 1..4 is 1.75, p100 is the largest
    (an index one past the end crashed the report), and no values read 0."""
    assert percentile([5.0, 1.0, 4.0, 2.0, 3.0], 50) == 3.0
    assert percentile([4.0, 3.0, 2.0, 1.0], 25) == pytest.approx(1.75)
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 50) == 0.0


def test_a_printed_p_value_stays_on_its_side_of_five_percent() -> None:
    """117 against 150 discordant items: p 0.049983, printed "p=0.05" beside an interval excluding 0
    (the advantage line and the report's paired column; a statistics audit)."""
    first = {f"i{k}": k < 117 or 267 <= k < 280 for k in range(300)}
    second = {f"i{k}": 117 <= k < 280 for k in range(300)}
    difference = paired_difference(first, second)
    assert (difference.only_first, difference.only_second) == (117, 150) and difference.ci95[1] < 0
    sentence = advantage_sentence({"over": ["m"], **difference.to_dict()})
    assert "exact McNemar p=0.04998" in sentence, sentence
    assert [format_p(p) for p in (0.05, 0.0504, 0.123456, 0.0001234)] == ["0.05", "0.0504", "0.123", "0.000123"]
