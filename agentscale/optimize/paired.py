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
    """first − second on their shared items, per item `scale · (right − right) + offset` (the
    objective: accuracy weighed, minus a fixed gap of cost and latency terms): its mean, standard
    error, the discordant counts, and the exact McNemar test of the right/wrong verdicts."""

    n: int
    only_first: int
    only_second: int
    scale: float = 1.0  # what one item's verdict is worth (the accuracy weight)
    offset: float = 0.0  # the gap of the terms that do not depend on the items

    @property
    def mean(self) -> float:
        """The mean per-item difference (the offset alone on no shared item)."""
        return self.scale * (self.only_first - self.only_second) / self.n + self.offset if self.n else self.offset

    @property
    def stderr(self) -> float:
        """The standard error under McNemar's null (the verdicts' difference only chance):
        `scale · √(discordant) / n`. The sample spread of the per-item differences is 0 when every
        shared item differs the same way, and a graph left the race on 2 items of 2 (p = 0.5)."""
        if self.n == 0:
            return math.inf
        return abs(self.scale) * math.sqrt(self.only_first + self.only_second) / self.n

    @property
    def ci95(self) -> tuple[float, float]:
        """The exact interval of the difference: the Clopper-Pearson interval of the discordant items'
        split (`mcnemar_interval`), scaled and offset like the per-item differences. For verdicts
        alone it excludes 0 exactly when `p_value` < 0.05 (the report prints both); with a cost or
        latency gap it is the objective's, and `accuracy_ci95` is the one `p_value` agrees with."""
        return self._objective_interval(self.accuracy_ci95)

    def _objective_interval(self, accuracy: tuple[float, float]) -> tuple[float, float]:
        """`accuracy` (the accuracy difference's interval) scaled and offset like the per-item differences."""
        if self.n == 0:
            return (-math.inf, math.inf)
        low, high = (self.scale * bound + self.offset for bound in accuracy)
        return (min(low, high), max(low, high))

    @property
    def accuracy_ci95(self) -> tuple[float, float]:
        """The exact 95% interval of the accuracy difference alone (cost and latency aside)."""
        return mcnemar_interval(self.only_first, self.only_second, self.n)

    @property
    def p_value(self) -> float:
        """Exact McNemar p of the right/wrong verdicts: whether the accuracies differ."""
        return mcnemar_exact(self.only_first, self.only_second)

    @property
    def apart(self) -> bool:
        """Whether the exact 95% interval (`ci95`) excludes 0: what the report's "within each
        other's 95% intervals" warning decides on, so that it agrees with the interval printed."""
        low, high = self.ci95
        return self.n > 0 and (low > 0 or high < 0)

    def separated(self, z: float) -> bool:
        """Whether the difference is more than one item plus `z` standard errors from zero (either
        way): McNemar's continuity-corrected test when `z` is a normal quantile. At `z` 0 it is the
        crowning's "more than one item": 2 items of 60 right under one graph only are not taken
        as evidence."""
        step = abs(self.scale) / self.n if self.n else math.inf
        return self.n > 0 and abs(self.mean) - step > z * self.stderr

    def items_to_separate(self, z: float) -> int | None:
        """How many shared items would separate this difference at `z` (`separated`) if its mean and
        share of discordant items held: what "add train items" means in numbers, at least one more
        than now. None when the two are level."""
        if self.n == 0 or self.mean == 0:
            return None
        spread = self.stderr * math.sqrt(self.n)  # per-item standard deviation under the null
        size, step = abs(self.mean), abs(self.scale)
        root = (z * spread + math.sqrt((z * spread) ** 2 + 4 * size * step)) / (2 * size)
        return max(math.floor(root**2) + 1, self.n + 1)

    def to_dict(self) -> dict[str, Any]:
        accuracy_low, accuracy_high = accuracy = self.accuracy_ci95  # root finding: once
        low, high = self._objective_interval(accuracy)
        return {
            "n": self.n,
            "difference": self.mean,
            "ci95": [low, high],
            "accuracy_ci95": [accuracy_low, accuracy_high],
            "only_first_right": self.only_first,
            "only_second_right": self.only_second,
            "p_value": self.p_value,
        }


def paired_difference(
    first: Mapping[str, bool], second: Mapping[str, bool], *, offset: float = 0.0, scale: float = 1.0
) -> PairedDifference:
    """Compare per-item outcomes on the items both have; `scale · (right − right) + offset` per item
    lets the caller compare rewards (accuracy weight, minus a fixed cost or latency penalty gap)."""
    shared = first.keys() & second.keys()
    only_first = sum(1 for k in shared if first[k] and not second[k])
    only_second = sum(1 for k in shared if second[k] and not first[k])
    return PairedDifference(len(shared), only_first, only_second, scale, offset)
