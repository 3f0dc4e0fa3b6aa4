"""The paired McNemar test used to compare two arms on the same items."""

from __future__ import annotations

import pytest

from agentscale.evaluate.stats import mcnemar_exact, paired_counts


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
