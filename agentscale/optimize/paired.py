"""Paired comparisons of two graphs on the items both answered.

Two graphs answering the same items err on the same hard items, so the difference of their per-item
scores varies far less than either score: a paired test separates graphs that a comparison of two
independent means (or of two Wilson intervals) would call equal. Every comparison the optimizer makes
between graphs (crowning, the report's advantage over the best single call) goes through here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentscale.evaluate.stats import mcnemar_exact, mcnemar_interval

Z95 = 1.959963984540054


@dataclass(frozen=True)
class PairedDifference:
    """first − second on their shared items: mean per-item difference, its standard error, the
    discordant counts and the exact McNemar p-value (right/wrong outcomes)."""

    n: int
    mean: float
    stderr: float
    only_first: int
    only_second: int
    step: float = 1.0  # the difference one item makes (the continuity correction's unit)
    of_outcomes: bool = False  # right − wrong per item, unscaled: its interval is McNemar's, exact

    @property
    def ci95(self) -> tuple[float, float]:
        """The exact interval that agrees with `p_value` for outcomes (the report prints both), else
        the normal one of the rewards."""
        if self.of_outcomes:
            return mcnemar_interval(self.only_first, self.only_second, self.n)
        return (self.mean - Z95 * self.stderr, self.mean + Z95 * self.stderr)

    @property
    def p_value(self) -> float:
        return mcnemar_exact(self.only_first, self.only_second)

    def separated(self, z: float) -> bool:
        """Whether the difference is more than `z` standard errors from zero (either way), after a
        continuity correction of one item: 2 items of 60 right under one graph only are not taken
        as evidence (their normal approximation would be; the exact McNemar p is 0.5)."""
        return self.n > 0 and abs(self.mean) - self.step / self.n > z * self.stderr

    def items_to_separate(self, z: float) -> int | None:
        """How many shared items would separate this difference at `z` (`separated`) if its mean and
        per-item spread held: what "add train items" means in numbers. None when the two are level."""
        if self.n == 0 or self.mean == 0:
            return None
        spread = self.stderr * math.sqrt(self.n)  # per-item standard deviation
        size = abs(self.mean)
        root = (z * spread + math.sqrt((z * spread) ** 2 + 4 * size * self.step)) / (2 * size)
        return math.floor(root**2) + 1

    def to_dict(self) -> dict[str, Any]:
        low, high = self.ci95
        return {
            "n": self.n,
            "difference": self.mean,
            "ci95": [low, high],
            "only_first_right": self.only_first,
            "only_second_right": self.only_second,
            "p_value": self.p_value,
        }


def paired_difference(
    first: Mapping[str, bool], second: Mapping[str, bool], *, offset: float = 0.0, scale: float = 1.0
) -> PairedDifference:
    """Compare per-item outcomes on the items both have; `scale · (right − right) + offset` per item
    lets the caller compare rewards (accuracy weight, minus a fixed cost or latency penalty gap)."""
    shared = sorted(first.keys() & second.keys())
    n = len(shared)
    if n == 0:
        return PairedDifference(0, offset, math.inf, 0, 0, abs(scale))
    differences = [scale * (float(first[k]) - float(second[k])) + offset for k in shared]
    mean = sum(differences) / n
    variance = sum((d - mean) ** 2 for d in differences) / max(1, n - 1)
    only_first = sum(1 for k in shared if first[k] and not second[k])
    only_second = sum(1 for k in shared if second[k] and not first[k])
    of_outcomes = offset == 0 and scale == 1
    return PairedDifference(n, mean, math.sqrt(variance / n), only_first, only_second, abs(scale), of_outcomes)
