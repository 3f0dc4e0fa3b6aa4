"""Small statistics for reports: Wilson intervals, percentiles and the paired McNemar test."""

from __future__ import annotations

import math
from collections.abc import Sequence


def wilson_interval(correct: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval for a proportion; well behaved at 0/n and n/n, unlike the normal one."""
    if n <= 0:
        return (0.0, 1.0)
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # exact at the ends: rounding left 5.55e-17 as the lower bound of 0/n in --json
    low = 0.0 if correct <= 0 else max(0.0, centre - half)
    high = 1.0 if correct >= n else min(1.0, centre + half)
    return (low, high)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes on the same items.

    Only the discordant items count (right under one arm, wrong under the other); under the null
    hypothesis each is equally likely to fall either way, so the p-value is a binomial tail. Exact
    rather than chi-squared because benchmarks here have tens of items, not thousands.
    """
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_counts(first: dict[str, bool], second: dict[str, bool]) -> tuple[int, int, int]:
    """(items both arms scored, right only under the first, right only under the second)."""
    shared = first.keys() & second.keys()
    only_first = sum(1 for key in shared if first[key] and not second[key])
    only_second = sum(1 for key in shared if second[key] and not first[key])
    return len(shared), only_first, only_second
