"""The paired McNemar test used to compare two arms on the same items."""

from __future__ import annotations

import pytest

from agentscale.evaluate.stats import mcnemar_exact, mcnemar_interval, paired_counts


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
    assert mcnemar_interval(0, 0, 10) == (0.0, 0.0)
    assert mcnemar_interval(5, 0, 10)[1] == pytest.approx(0.5)  # every discordant item the first's at most
