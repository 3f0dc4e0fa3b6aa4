"""Small statistics for reports: Wilson intervals, percentiles and the paired McNemar test and interval."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


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


def format_p(p: float) -> str:
    """`p` to three significant digits, with more where three would round it across 0.05: 0.049983
    printed as "p=0.05" beside an interval that excludes 0 told the reader the test was not
    significant at 5%."""
    digits, text = 3, f"{p:.3g}"
    while (float(text) < 0.05) != (p < 0.05):  # ends by 17 digits, which give p back exactly
        digits += 1
        text = f"{p:.{digits}g}"
    return text


def mcnemar_interval(only_first: int, only_second: int, n: int) -> tuple[float, float]:
    """95% interval of first − second accuracy on `n` shared items, given the discordant counts. The
    difference is (share of items discordant) × (2 · share of those won by the first − 1): each bound
    takes the exact (Clopper-Pearson) interval of the split, the inversion of `mcnemar_exact`, so it
    excludes 0 exactly when p < 0.05, and scales it by the discordant share's own exact bounds, the
    wider where that widens it. Scaling by the observed share took it as known: 1 discordant item of
    100 read [−0.95, +1.0] points, narrower than the ±3.6 of none."""
    if n <= 0:
        return (0.0, 0.0)
    discordant = only_first + only_second
    share_low, share_high = _clopper_pearson(discordant, n)
    # no discordant item: any split (the difference within the share's upper bound, 1 - 0.025^(1/n))
    won_low, won_high = _clopper_pearson(only_first, discordant) if discordant else (0.0, 1.0)
    low, high = 2 * won_low - 1, 2 * won_high - 1
    return (low * (share_high if low < 0 else share_low), high * (share_high if high > 0 else share_low))


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact two-sided 95% interval of a binomial share from k of n (n > 0)."""
    low = 0.0 if k == 0 else _root(lambda p: _at_least(k, n, p) - 0.025)
    high = 1.0 if k == n else _root(lambda p: _at_least(k + 1, n, p) - 0.975)
    return (low, high)


def _at_least(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p), 0 < p < 1 (in logs: n may be thousands)."""
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(
        1.0,
        sum(
            math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
            for i in range(k, n + 1)
        ),
    )


def _root(increasing: Callable[[float], float]) -> float:
    """Where an increasing function of p in (0, 1) crosses zero, by bisection."""
    low, high = 0.0, 1.0
    for _ in range(50):  # 1e-15 apart; nearer 1 a double rounds p to 1
        middle = (low + high) / 2
        if increasing(middle) < 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def paired_counts(first: dict[str, bool], second: dict[str, bool]) -> tuple[int, int, int]:
    """(items both arms scored, right only under the first, right only under the second)."""
    shared = first.keys() & second.keys()
    only_first = sum(1 for key in shared if first[key] and not second[key])
    only_second = sum(1 for key in shared if second[key] and not first[key])
    return len(shared), only_first, only_second
